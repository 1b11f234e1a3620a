"""Protocol abuse over raw sockets: SMTP smuggling (RFC 5321 §4.1.1.4 — only
<CRLF>.<CRLF> ends DATA; bare CR and bare LF are refused), command lines
over 512 octets (§4.5.3.1.4), and the error limit that ends a session."""

import pytest

from harness import BOB, Closed, USER, lf, split_trace, wait_for

SENDER = "sender@example.org"

HEAD = (b"From: <sender@example.org>\r\nTo: <alice@example.test>\r\n"
        b"Subject: smuggling\r\n\r\nfirst line\r\nbody")

# After the fake end comes a whole second transaction, to bob, which a
# server that took the fake end for the real one would run.
SMUGGLED = (b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
            b"From: <evil@example.org>\r\nSubject: smuggled\r\n\r\nsmuggled\r\n")

FAKE_ENDS = {
    "lf-dot-lf": b"\n.\n",
    "crlf-dot-lf": b"\r\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-cr": b"\r.\r",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-cr": b"\r\n.\r",
    "cr-dot-lf": b"\r.\n",
}


def open_data(c, rcpts=(USER,)):
    c.ehlo()
    c.expect(f"MAIL FROM:<{SENDER}>", 250)
    for r in rcpts:
        c.expect(f"RCPT TO:<{r}>", 250)
    c.expect("DATA", 354)


def assert_nothing_stored(p):
    for a in (USER, BOB):
        assert p.stored(a) == {}, f"{a} got mail: {sorted(p.stored(a))}"
    wait_for(lambda: not p.partial_files(), 10, "no partial files in the spool or tmp/")


def fresh_delivery(p):
    """A well-behaved client still gets its message delivered, over SMTP
    and over LMTP."""
    before = len(p.stored(USER))
    for c, hello in ((p.smtp(), "EHLO"), (p.lmtp(), "LHLO")):
        with c:
            c.ehlo(verb=hello)
            c.expect(f"MAIL FROM:<{SENDER}>", 250)
            c.expect(f"RCPT TO:<{USER}>", 250)
            c.data(b"Subject: fresh\r\n\r\nfresh\r\n", 250)
            c.expect("QUIT", 221)
    assert len(p.stored(USER)) == before + 2


@pytest.fixture(autouse=True)
def served_afterwards(mta):
    """Whatever a test here sent, fresh clients are served afterwards."""
    yield
    assert mta.proc.poll() is None, "the server exited"
    fresh_delivery(mta)


@pytest.mark.parametrize("fake", sorted(FAKE_ENDS))
@pytest.mark.parametrize("how", ["one-write", "trickled"])
def test_smuggling_never_ends_data_early(mta, fake, how):
    payload = HEAD + FAKE_ENDS[fake] + SMUGGLED + b".\r\n"
    with mta.smtp() as c:
        open_data(c)
        if how == "one-write":
            c.send(payload)
        else:
            for b in payload:
                c.send(bytes([b]))
        # Exactly one reply, at the real end, refusing the whole message.
        r = c.reply()
        assert r.code == 550 and r.enhanced == "5.6.0", r
        # Nothing else was answered: the smuggled commands never ran.
        c.send(b"NOOP\r\n")
        r = c.reply()
        assert r.code == 250, f"a reply to a smuggled command: {r}"
        assert not c.pending(0.2), bytes(c.buf)
        # The session goes on normally.
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect("RSET", 250)
        c.expect("QUIT", 221)
    assert_nothing_stored(mta)


@pytest.mark.parametrize("bare", [b"\n", b"\r"], ids=["bare-lf", "bare-cr"])
@pytest.mark.parametrize("where", ["header", "body", "end-of-body"])
def test_bare_line_ends_refused(mta, bare, where):
    if where == "header":
        msg = b"Subject: x" + bare + b"X-Other: y\r\n\r\nbody\r\n"
    elif where == "body":
        msg = b"Subject: x\r\n\r\nbefore" + bare + b"after\r\n"
    else:
        msg = b"Subject: x\r\n\r\nlast line" + bare + b"\r\n"
    with mta.smtp() as c:
        open_data(c)
        c.send(msg + b".\r\n")
        r = c.reply()
        assert r.code == 550 and r.enhanced == "5.6.0", r
        c.expect("NOOP", 250)
    assert_nothing_stored(mta)


def test_message_after_a_refused_one_is_delivered(mta):
    good = b"Subject: good\r\n\r\nline\r\n..dot\r\n"
    with mta.smtp() as c:
        open_data(c)
        c.send(HEAD + b"\n.\n" + SMUGGLED + b".\r\n")
        assert c.reply().code == 550
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.expect("DATA", 354)
        c.send(good + b".\r\n")
        assert c.reply().code == 250
    stored = mta.stored_list(USER)
    assert len(stored) == 1
    assert split_trace(stored[0])[2] == lf(good).replace(b"\n..dot", b"\n.dot")
    assert mta.stored(BOB) == {}


def test_lmtp_smuggling(mta):
    # LMTP answers the refusal once per accepted recipient.
    with mta.lmtp() as c:
        c.ehlo(verb="LHLO")
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.expect(f"RCPT TO:<{BOB}>", 250)
        c.expect("DATA", 354)
        c.send(HEAD + b"\r\n.\n" + SMUGGLED + b".\r\n")
        for r in c.replies(2):
            assert r.code == 550 and r.enhanced == "5.6.0", r
        c.send(b"NOOP\r\n")
        assert c.reply().code == 250
        assert not c.pending(0.2), bytes(c.buf)
    assert_nothing_stored(mta)


# -- command line length ---------------------------------------------------------


def test_command_line_of_512_octets_is_accepted_513_refused(mta):
    with mta.smtp() as c:
        c.ehlo()
        line = "NOOP " + "x" * (512 - 2 - 5)
        assert len(line) + 2 == 512
        c.expect(line, 250)
        c.expect(line + "x", 500, "5.5.2")
        # A long MAIL or RCPT line is refused the same way.
        c.expect(f"MAIL FROM:<{'a' * 600}@example.org>", 500, "5.5.2")
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}> " + "X" * 600, 500, "5.5.2")
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.data(b"Subject: after long lines\r\n\r\nok\r\n", 250)
    assert len(mta.stored(USER)) == 1


def test_long_line_gets_one_reply(mta):
    with mta.smtp() as c:
        c.ehlo()
        c.send(b"NOOP " + b"y" * 10_000 + b"\r\n")
        r = c.reply()
        assert r.code == 500 and r.enhanced == "5.5.2", r
        c.expect("NOOP", 250)
        assert not c.pending(0.2), bytes(c.buf)


def test_huge_line_is_refused_or_dropped(mta):
    # Past some bound the server may treat a line as a flood and drop the
    # client; it must never take it as a command.
    with mta.smtp() as c:
        c.ehlo()
        try:
            c.send(b"NOOP " + b"y" * 300_000 + b"\r\nNOOP\r\n")
            r = c.reply()
        except (Closed, OSError):
            return
        assert r.code == 500 and r.enhanced == "5.5.2", r
        try:
            r = c.reply()
        except Closed:
            return
        assert r.code == 250, r


def test_endless_line_is_cut_off(mta):
    # A line that never ends: the server must not buffer it without bound;
    # it answers with errors and closes, or stops reading.
    with mta.smtp() as c:
        c.ehlo()
        c.sock.settimeout(10)
        sent = 0
        try:
            while sent < 32 * 1024 * 1024:
                c.sock.sendall(b"z" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            return
        except OSError:  # send timed out: the server stopped reading
            return
        raise AssertionError("the server read 32 MB of one command line")


# -- the error limit -----------------------------------------------------------------


def test_too_many_errors_end_the_session(mta):
    with mta.smtp() as c:
        c.ehlo()
        replies = []
        for _ in range(100):
            try:
                r = c.cmd("FROB")
            except (Closed, BrokenPipeError, ConnectionResetError):
                break
            replies.append(r)
            if r.code == 421:
                break
        assert replies and replies[-1].code == 421, replies[-3:]
        assert replies[-1].enhanced and replies[-1].enhanced.startswith("4."), replies[-1]
        assert all(r.code == 500 for r in replies[:-1]), replies
        assert len(replies) > 3, "the session ended after very few errors"
        assert c.read_to_eof() == b""


def test_pipelined_errors_end_the_session(mta):
    with mta.smtp() as c:
        c.ehlo()
        c.send(b"FROB\r\n" * 200)
        data = c.read_to_eof(timeout=20)
        lines = data.split(b"\r\n")
        assert any(l.startswith(b"421 ") for l in lines), lines[-3:]
        assert lines.count(b"") == 1 and lines[-1] == b""  # ended on a full line


def test_unknown_recipients_count_as_errors(mta):
    # Directory harvesting: guessing addresses ends in 421 as well.
    with mta.smtp() as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        codes = []
        for i in range(200):
            try:
                r = c.cmd(f"RCPT TO:<guess{i}@example.test>")
            except (Closed, BrokenPipeError, ConnectionResetError):
                break
            codes.append(r.code)
            if r.code == 421:
                break
        assert codes and codes[-1] == 421, codes[-3:]
        assert set(codes[:-1]) == {550}, codes


def test_a_few_errors_do_not_end_the_session(mta):
    with mta.smtp() as c:
        c.ehlo()
        for _ in range(3):
            c.expect("FROB", 500)
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.data(b"Subject: fine\r\n\r\nfine\r\n", 250)
    assert len(mta.stored(USER)) == 1


# -- NUL bytes, HTTP, bad numbers (as for POP3) ----------------------------------------


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_nul_bytes_in_commands_are_refused(mta, lmtp):
    c = mta.lmtp() if lmtp else mta.smtp()
    with c:
        c.ehlo(verb="LHLO" if lmtp else "EHLO")
        for line in (b"NOOP\x00", b"\x00", b"MAIL FROM:<sender@example.org>\x00",
                     b"MAIL\x00FROM:<sender@example.org>"):
            r = c.cmd(line)
            assert r.code == 500 and r.enhanced == "5.5.2", (line, r)
        # None of them started a transaction.
        c.expect(f"RCPT TO:<{USER}>", 503)
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        r = c.cmd(f"RCPT TO:<{USER}>\x00".encode())
        assert r.code == 500, r
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.data(b"Subject: after NULs\r\n\r\nok\r\n", 250)
        c.expect("QUIT", 221)
    assert len(mta.stored(USER)) == 1


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_http_request_to_the_smtp_port(mta, lmtp):
    """A browser or scanner: every line is refused, or the server hangs up;
    nothing is ever accepted."""
    c = mta.lmtp() if lmtp else mta.smtp()
    with c:
        c.send(b"GET / HTTP/1.1\r\nHost: mail.example.test\r\nUser-Agent: x\r\n"
               b"Accept: */*\r\n\r\n")
        codes = []
        try:
            for _ in range(5):
                codes.append(c.reply(timeout=5).code)
        except Closed:
            pass
        assert codes, "no reply and no close"
        assert all(500 <= x < 600 or x == 421 for x in codes), codes
    assert_nothing_stored(mta)


@pytest.mark.parametrize("size", ["-1", "+1", "1x", "x", "0x10", "1.5", "",
                                  "18446744073709551616", "99999999999999999999999"])
def test_bdat_with_a_bad_size_is_refused_and_ends_the_session(mta, size):
    """After a BDAT whose size cannot be read, the octets that follow cannot
    be told from commands (RFC 3030): refused, then the server hangs up,
    having read none of them as commands."""
    with mta.smtp() as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.send(f"BDAT {size} LAST\r\n".encode() + b"RSET\r\nMAIL FROM:<a@b.example>\r\n")
        r = c.reply()
        assert r.code == 501 and r.enhanced == "5.5.4", (size, r)
        assert c.read_to_eof() == b"", "the octets after a bad BDAT were read as commands"
    assert_nothing_stored(mta)


# -- before EHLO, before the greeting ----------------------------------------------


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_commands_before_the_greeting(mta, lmtp):
    # A client that talks before the server has spoken (RFC 5321 §3.1 says
    # it must wait) gets the greeting first, then its answers in order.
    c = mta.lmtp(greet=False) if lmtp else mta.smtp(greet=False)
    with c:
        hello = b"LHLO" if lmtp else b"EHLO"
        c.send(hello + b" early.example.org\r\nNOOP\r\nQUIT\r\n")
        assert c.reply().code == 220
        assert c.reply().code == 250
        assert c.reply().code == 250
        assert c.reply().code == 221
        assert c.read_to_eof() == b""


def test_pipelined_transaction_before_ehlo_runs_nothing(mta):
    # Without EHLO/HELO, MAIL is refused, so RCPT and DATA are too, and the
    # message that follows is read as (bad) commands, never as a message.
    with mta.smtp() as c:
        c.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{USER}>\r\nDATA\r\n".encode()
               + b"Subject: sneaky\r\n\r\nbody\r\n.\r\nNOOP\r\n")
        codes = [c.reply().code for _ in range(8)]
        assert codes[:3] == [503, 503, 503], codes
        assert all(x == 500 for x in codes[3:7]), codes
        assert codes[7] == 250, codes
    assert_nothing_stored(mta)


# -- addresses --------------------------------------------------------------------------

LONG_DOMAIN = ".".join(["d" * 60] * 5) + ".test"  # 309 octets: over 255


@pytest.mark.parametrize("cmd,code,enhanced", [
    ('RCPT TO:<"al ice"@example.test>', 550, "5.1.1"),        # quoted, unknown
    ("RCPT TO:<" + "a" * 64 + "@example.test>", 550, "5.1.1"),  # 64: the limit
    ("RCPT TO:<" + "a" * 65 + "@example.test>", 501, "5.1.3"),  # RFC 5321 §4.5.3.1.1
    (f"RCPT TO:<alice@{LONG_DOMAIN}>", 501, "5.1.3"),          # §4.5.3.1.2
    ("RCPT TO:<" + "a" * 60 + "@" + "b" * 200 + ".test>", 501, "5.1.3"),  # path over 256
    (f"RCPT TO:<{USER}> FROB=1", 555, "5.5.4"),                # unknown parameter
    (f"RCPT TO:<{USER}", 501, "5.1.3"),                        # unterminated
    ("RCPT TO:<>", 501, "5.1.3"),
    ("RCPT TO:<\u00e4lice@example.test>", 553, "5.6.7"),       # UTF-8 without SMTPUTF8
    # With SMTPUTF8 (the MAIL below says so for bytes), UTF-8 that is
    # truncated or not UTF-8 at all.
    (b"RCPT TO:<al\xc3@example.test>", 501, "5.1.3"),
    (b"RCPT TO:<al\xff\xfe@example.test>", 501, "5.1.3"),
])
def test_bad_recipient_addresses(mta, cmd, code, enhanced):
    with mta.smtp() as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{SENDER}>" + (" SMTPUTF8" if isinstance(cmd, bytes) else ""), 250)
        c.expect(cmd if isinstance(cmd, bytes) else cmd.encode(), code, enhanced)
        # The transaction is intact: a good recipient still works.
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.data(b"Subject: after a bad address\r\n\r\nok\r\n", 250)
    assert len(mta.stored(USER)) == 1
    assert mta.stored(BOB) == {}


@pytest.mark.parametrize("cmd,code,enhanced", [
    ("MAIL FROM:<" + "s" * 65 + "@example.org>", 501, "5.1."),
    (f"MAIL FROM:<{SENDER}> FROB=1", 555, "5.5.4"),
    (f"MAIL FROM:<{SENDER}> BODY=9BIT", 501, "5.5.4"),
    (f"MAIL FROM:<{SENDER}> SIZE=x", 501, "5.5.4"),
    ("MAIL FROM:<\u00e4@example.org>", 553, "5.6.7"),
    (b"MAIL FROM:<j\xc3@example.org> SMTPUTF8", 501, "5.1.7"),
    (f"MAIL FROM:<{SENDER}", 501, "5.1.7"),
])
def test_bad_sender_addresses(mta, cmd, code, enhanced):
    with mta.smtp() as c:
        c.ehlo()
        c.expect(cmd if isinstance(cmd, bytes) else cmd.encode(), code, enhanced)
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.data(b"Subject: after a bad sender\r\n\r\nok\r\n", 250)
    assert len(mta.stored(USER)) == 1


def test_quoted_local_part_and_source_route_reach_the_mailbox(mta):
    # "alice"@ is alice@ (RFC 5321 §4.1.2: quoting that changes nothing);
    # a source route is accepted and ignored (§4.1.1.3, Appendix C).
    with mta.smtp() as c:
        c.ehlo()
        c.expect('MAIL FROM:<"john doe"@example.org>', 250)
        c.expect('RCPT TO:<"alice"@example.test>', 250)
        c.expect(f"RCPT TO:<@relay.example.org:{BOB}>", 250)
        c.data(b"Subject: quoted\r\n\r\nquoted\r\n", 250)
    assert len(mta.stored(USER)) == 1 and len(mta.stored(BOB)) == 1
    return_path, _, _ = split_trace(mta.stored_list(USER)[0])
    assert return_path == b'<"john doe"@example.org>'


# -- the client goes away mid-message ---------------------------------------------------


@pytest.mark.parametrize("how", ["data-close", "data-reset", "bdat-close", "lmtp-data-close"])
def test_disconnect_in_the_middle_of_a_message_leaves_nothing(mta, how):
    import socket

    c = mta.lmtp() if how.startswith("lmtp") else mta.smtp()
    c.ehlo(verb="LHLO" if how.startswith("lmtp") else "EHLO")
    c.expect(f"MAIL FROM:<{SENDER}>", 250)
    c.expect(f"RCPT TO:<{USER}>", 250)
    c.expect(f"RCPT TO:<{BOB}>", 250)
    half = b"Subject: half\r\n\r\n" + b"half a message line\r\n" * 20000
    if how.startswith("bdat"):
        c.send(b"BDAT 1000000\r\n" + half)
    else:
        c.expect("DATA", 354)
        c.send(half)
    # The server has the half message: it is spooled.
    wait_for(lambda: mta.partial_files(), 20, "the half message to reach the spool")
    if how.endswith("reset"):
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    assert_nothing_stored(mta)
