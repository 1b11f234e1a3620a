"""BDAT (RFC 3030 CHUNKING) over a raw socket: chunks of any size, LAST,
pipelined chunks, chunk boundaries inside a line end, no dot-stuffing, and
the content coming back byte-exact over POP3."""

import poplib

import pytest

from harness import BOB, Closed, PASSWORD, USER, crlf, lf, message_lines, retr_wire, split_trace, wait_for

SENDER = "sender@example.org"

MSG = (
    b"From: <sender@example.org>\r\nTo: <alice@example.test>\r\nSubject: chunks\r\n"
    b"Message-ID: <bdat@example.org>\r\n\r\n"
    b"first line\r\n"
    b".\r\n"                     # a lone dot: content, not an end, in BDAT
    b"..two dots\r\n"
    b".leading dot\r\n"
    b"8-bit: \xc3\xa9t\xc3\xa9 \xe2\x82\xac \xff\xfe\r\n"
    + b"long " * 190 + b"\r\n"
    b"last line\r\n"
)


def begin(c, rcpts=(USER,)):
    c.ehlo()
    c.expect(f"MAIL FROM:<{SENDER}> BODY=8BITMIME", 250)
    for r in rcpts:
        c.expect(f"RCPT TO:<{r}>", 250)


def bdat(c, chunk: bytes, last=False, code=250, enhanced=None):
    c.send(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)
    r = c.reply()
    assert r.code == code, r
    if enhanced:
        assert r.enhanced and r.enhanced.startswith(enhanced), r
    return r


def only_message(p, address=USER):
    files = p.check_names(address)
    assert len(files) == 1, sorted(files)
    return split_trace(next(iter(files.values())))[2]


def test_single_chunk_last(mta):
    with mta.smtp() as c:
        begin(c)
        r = bdat(c, MSG, last=True)
        assert r.enhanced and r.enhanced.startswith("2."), r
        c.expect("QUIT", 221)
    assert only_message(mta) == lf(MSG)


@pytest.mark.parametrize("size", [1, 2, 7, 100, 4096])
def test_many_chunks(mta, size):
    chunks = [MSG[i : i + size] for i in range(0, len(MSG), size)]
    with mta.smtp() as c:
        begin(c)
        for ch in chunks[:-1]:
            r = bdat(c, ch)
            assert r.enhanced and r.enhanced.startswith("2."), r
        bdat(c, chunks[-1], last=True)
    assert only_message(mta) == lf(MSG)


def test_bdat_0_last_ends_the_message(mta):
    with mta.smtp() as c:
        begin(c)
        bdat(c, MSG[:50])
        bdat(c, MSG[50:])
        bdat(c, b"", last=True)
    assert only_message(mta) == lf(MSG)


def test_crlf_split_across_chunks(mta):
    # Every CRLF of the message cut between its CR and LF.
    pieces = MSG.split(b"\n")
    chunks = [pieces[0]] + [b"\n" + p for p in pieces[1:]]
    assert b"".join(chunks) == MSG
    with mta.smtp() as c:
        begin(c)
        for ch in chunks[:-1]:
            bdat(c, ch)
        bdat(c, chunks[-1], last=True)
    assert only_message(mta) == lf(MSG)


def test_pipelined_bdat(mta):
    a, b, d = MSG[:100], MSG[100:300], MSG[300:]
    with mta.smtp() as c:
        c.ehlo()
        c.send(
            f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{USER}>\r\nRCPT TO:<{BOB}>\r\n".encode()
            + b"BDAT %d\r\n" % len(a) + a
            + b"BDAT %d\r\n" % len(b) + b
            + b"BDAT %d LAST\r\n" % len(d) + d
            + f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{USER}>\r\n".encode()
            + b"BDAT %d LAST\r\n" % len(MSG) + MSG
            + b"QUIT\r\n"
        )
        codes = [r.code for r in c.replies(10)]
        assert codes == [250] * 9 + [221], codes
    got = sorted(split_trace(x)[2] for x in mta.stored_list(USER))
    assert got == [lf(MSG), lf(MSG)]
    assert only_message(mta, BOB) == lf(MSG)


def test_bdat_then_pop3_retr_is_byte_exact(mta):
    with mta.smtp() as c:
        begin(c)
        bdat(c, MSG[:123])
        bdat(c, MSG[123:], last=True)
    stored = mta.stored_list(USER)[0]
    _, _, rest = split_trace(stored)
    assert rest == lf(MSG)
    # POP3 gives back the stored message with CRLF and dot-stuffing.
    with mta.session(USER, PASSWORD) as c:
        c.ok("RETR 1")
        got = c.multiline_raw()
        assert got == retr_wire(stored)
        c.ok("QUIT")
    # And what a POP3 client sees after the two trace headers is what was sent.
    pop = poplib.POP3("127.0.0.1", mta.port, timeout=15)
    pop.user(USER)
    pop.pass_(PASSWORD)
    _, lines, _ = pop.retr(1)
    pop.quit()
    assert lines == message_lines(stored)
    trace = stored[: len(stored) - len(lf(MSG))]
    assert b"\r\n".join(lines) + b"\r\n" == crlf(trace) + MSG


def test_data_after_bdat_is_refused(mta):
    with mta.smtp() as c:
        begin(c)
        bdat(c, MSG[:40])
        c.expect("DATA", 503, "5.5.")
        # The transaction is still usable with BDAT.
        bdat(c, MSG[40:], last=True)
    assert only_message(mta) == lf(MSG)


def test_rset_abandons_a_chunked_message(mta):
    with mta.smtp() as c:
        begin(c)
        bdat(c, MSG[:40])
        c.expect("RSET", 250)
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{BOB}>", 250)
        bdat(c, MSG, last=True)
    assert mta.stored(USER) == {}
    assert only_message(mta, BOB) == lf(MSG)
    wait_for(lambda: not mta.partial_files(), 10, "no partial files after RSET")


def test_refused_bdat_chunk_is_not_read_as_commands(mta):
    # A BDAT refused for its place in the session still carries its octets:
    # the server must skip them or close the connection, never execute them
    # as commands. The payload's commands have replies of their own (252,
    # 214, 221), so any of them executed shows.
    payload = b"VRFY alice\r\nHELP\r\nQUIT\r\n"
    with mta.smtp() as c:
        c.ehlo()
        c.send(b"BDAT %d LAST\r\n" % len(payload) + payload + b"NOOP\r\n")
        r = c.reply()
        assert r.code == 503, r
        try:
            r = c.reply()
        except Closed:
            return  # closed instead of skipping: nothing was executed
        assert r.code == 250, f"payload of a refused BDAT was executed: {r}"
        c.expect("NOOP", 250)


def test_oversize_bdat_refused_and_not_stored(make_pillar):
    p = make_pillar(smtp=True, max_message_size="10K")
    p.add_user(USER, PASSWORD)
    chunk = b"x" * 78 + b"\r\n"
    with p.smtp() as c:
        begin(c)
        codes = []
        for _ in range(200):  # 16 KB in 80-octet chunks
            c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
            r = c.reply()
            codes.append(r.code)
            if r.code != 250:
                assert r.code == 552 and r.enhanced == "5.3.4", r
                break
        c.send(b"BDAT 0 LAST\r\n")
        r = c.reply()
        assert 552 in codes or (r.code == 552 and r.enhanced == "5.3.4"), (codes[-3:], r)
        assert r.code >= 500, r
        # Still a working session.
        c.expect("RSET", 250)
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        bdat(c, MSG, last=True)
    assert only_message(p) == lf(MSG)
    wait_for(lambda: not p.partial_files(), 10, "no partial files after the refused message")


def test_bdat_binary_octets_in_body_kept(mta):
    # 8BITMIME content in a chunk: every octet but CR and LF, kept as sent.
    body = bytes(b for b in range(1, 256) if b not in (10, 13)) + b"\r\n"
    msg = b"Subject: octets\r\n\r\n" + body * 3
    with mta.smtp() as c:
        begin(c)
        bdat(c, msg, last=True)
    assert only_message(mta) == lf(msg)
