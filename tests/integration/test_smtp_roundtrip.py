"""End to end: a message sent over SMTP comes back over POP3 RETR exactly as
sent, apart from the Return-Path: and Received: headers the server puts in
front of it. On disk it is stored with LF line ends; POP3 turns them back
into CRLF and dot-stuffs lines that start with a dot."""

import poplib

import pytest

from harness import PASSWORD, USER, crlf, dot_stuff, lf, retr_wire, split_trace, vsize

HDR = b"From: <a@example.org>\r\nTo: <alice@example.test>\r\nSubject: tricky\r\n"

# Every message ends in CRLF: over SMTP there is no message without a final
# line end (RFC 5321 §4.1.1.4), so that case cannot be tested here.
MESSAGES = {
    "plain": HDR + b"\r\nHello.\r\nSecond line.\r\n",
    "dot_lines": HDR + b"\r\n.\r\n..\r\n...\r\n.hidden\r\n. \r\n.\t\r\nend\r\n",
    "dot_first_line_of_body": HDR + b"\r\n.starts with a dot\r\n",
    "dot_last_line": HDR + b"\r\nbody\r\n..\r\n",
    "starts_with_dot": b".first line is a dot line\r\n\r\nbody\r\n",
    "8bit_utf8": HDR.replace(b"tricky", "Grüße €".encode())
    + b"\r\n" + "Ünïcödé ✓ 日本語 — ça va?\r\n".encode(),
    "8bit_latin1": HDR + b"\r\nLatin-1: caf\xe9 na\xefve \xa9 \xbd\r\n",
    "all_high_octets": HDR + b"\r\n" + bytes(range(0x80, 0x100)) + b"\r\n",
    "control_octets": HDR + b"\r\n" + bytes(b for b in range(1, 0x20) if b not in (10, 13))
    + b"\x7f\r\n",
    "long_lines_998": HDR + b"\r\n" + b"a" * 998 + b"\r\n." + b"b" * 997 + b"\r\n",
    "trailing_whitespace": HDR + b"\r\nspaces   \r\ntabs\t\t\r\n \r\n\t\r\n",
    "blank_lines": HDR + b"\r\n\r\n\r\n\r\nafter three blank lines\r\n\r\n",
    "header_only": b"Subject: header only\r\nX-Other: y\r\n",
    "folded_headers": b"Subject: a folded\r\n subject line\r\nX-Long: one\r\n\ttwo\r\n\r\nbody\r\n",
    "received_already": b"Received: from elsewhere by somewhere; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Return-Path: <old@example.org>\r\nSubject: old trace\r\n\r\nbody\r\n",
    "big_1m": HDR + b"\r\n" + b"".join(b"%06d the quick brown fox jumps over the lazy dog\r\n" % i
                                       for i in range(20000)),
    "dots_everywhere": HDR + b"\r\n" + b"".join(b"." * n + b"\r\n" for n in range(1, 50)),
}


def send_raw(p, msg):
    """DATA over a raw socket with the client's dot-stuffing done here."""
    with p.smtp() as c:
        c.ehlo()
        c.expect("MAIL FROM:<a@example.org> BODY=8BITMIME", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(msg) + b".\r\n")
        r = c.reply(timeout=60)
        assert r.code == 250, r
        c.expect("QUIT", 221)


def send_smtplib(p, msg):
    s = p.smtplib()
    assert s.sendmail("a@example.org", [USER], msg, mail_options=["BODY=8BITMIME"]) == {}
    s.quit()


def send_bdat(p, msg):
    with p.smtp() as c:
        c.ehlo()
        c.expect("MAIL FROM:<a@example.org> BODY=8BITMIME", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        r = c.reply(timeout=60)
        assert r.code == 250, r


def strip_trace_lines(lines):
    """Drop the Return-Path: line and the Received: header (with its
    continuation lines) from the start of a list of message lines."""
    assert lines and lines[0].startswith(b"Return-Path:"), lines[:2]
    assert len(lines) > 1 and lines[1].startswith(b"Received:"), lines[:3]
    i = 2
    while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
        i += 1
    return lines[i:]


@pytest.mark.parametrize("case", sorted(MESSAGES))
@pytest.mark.parametrize("send", [send_raw, send_smtplib, send_bdat], ids=["raw", "smtplib", "bdat"])
def test_smtp_to_pop3_is_byte_exact(mta, case, send):
    msg = MESSAGES[case]
    send(mta, msg)
    files = mta.check_names(USER)
    assert len(files) == 1, sorted(files)
    stored = next(iter(files.values()))
    # On disk: the two trace headers, then the message with LF line ends.
    _, _, rest = split_trace(stored)
    assert rest == lf(msg), (rest[:200], lf(msg)[:200])
    trace = stored[: len(stored) - len(rest)]
    # POP3 RETR: CRLF, dot-stuffed, exactly the octets LIST announces.
    with mta.session(USER, PASSWORD) as c:
        assert c.ok("LIST 1") == b"+OK 1 %d" % vsize(stored)
        c.ok("RETR 1")
        wire = c.multiline_raw(timeout=60)
        c.ok("QUIT")
    assert wire == retr_wire(stored)
    assert wire == dot_stuff(crlf(trace) + msg) + b".\r\n"
    # poplib: after the two added headers, the lines of the message as sent.
    pop = poplib.POP3("127.0.0.1", mta.port, timeout=30)
    try:
        pop.user(USER)
        pop.pass_(PASSWORD)
        _, lines, octets = pop.retr(1)
        pop.quit()
    finally:
        pop.close()
    body = strip_trace_lines(lines)
    assert b"".join(l + b"\r\n" for l in body) == msg


def test_many_messages_come_back_in_order(mta):
    names = sorted(MESSAGES)
    s = mta.smtplib()
    for n in names:
        assert s.sendmail("a@example.org", [USER], MESSAGES[n]) == {}
    s.quit()
    pop = poplib.POP3("127.0.0.1", mta.port, timeout=30)
    pop.user(USER)
    pop.pass_(PASSWORD)
    count, _ = pop.stat()
    assert count == len(names)
    got = []
    for i in range(1, count + 1):
        _, lines, _ = pop.retr(i)
        got.append(b"".join(l + b"\r\n" for l in strip_trace_lines(lines)))
    pop.quit()
    # POP3 lists messages in delivery order.
    assert got == [MESSAGES[n] for n in names]


@pytest.mark.parametrize("wire, stored", [
    (b".\r\n", b""),                 # the end of data right after DATA: an empty message
    (b"..\r\n.\r\n", b".\n"),        # a first line that is a lone (stuffed) dot
    (b"\r\n.\r\n", b"\n"),           # one empty line
    (b"...\r\n.\r\n", b"..\n"),
    (b".\r\n.\r\n", b""),            # the first ".CRLF" ends it; the second is a bad command
], ids=["empty", "lone-dot", "empty-line", "two-dots", "end-then-junk"])
def test_end_of_data_at_the_very_start(mta, wire, stored):
    # The CRLF that ends the DATA command line counts as the CRLF before
    # the terminating dot (RFC 5321 §4.1.1.4).
    with mta.smtp() as c:
        c.ehlo()
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.expect("DATA", 354)
        c.send(wire)
        assert c.reply(timeout=10).code == 250
        if wire == b".\r\n.\r\n":
            assert c.reply().code == 500  # "." read as a command line
        c.expect("NOOP", 250)
    data = mta.stored_list(USER)
    assert len(data) == 1
    assert split_trace(data[0])[2] == stored
    with mta.session(USER, PASSWORD) as c:
        c.ok("RETR 1")
        assert c.multiline_raw() == retr_wire(data[0])
        c.ok("QUIT")
