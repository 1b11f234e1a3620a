"""LMTP (RFC 2033) on lmtp_listen, over TCP and over a unix socket: LHLO,
and after the end of the data one reply per accepted recipient, in RCPT
order, so that one full mailbox does not bounce the others."""

import pytest

from harness import BOB, PASSWORD, USER, lf, split_trace, wait_for

SENDER = "sender@example.org"


def message(n=1, body=b"Hello over LMTP.\r\n.dot line\r\n"):
    return (f"From: <{SENDER}>\r\nTo: <{USER}>\r\nSubject: lmtp {n}\r\n"
            f"Message-ID: <lmtp-{n}@example.org>\r\n\r\n").encode() + body


def one(p, address, sent):
    files = p.check_names(address)
    assert len(files) == 1, (address, sorted(files))
    return_path, received, rest = split_trace(next(iter(files.values())))
    assert return_path == f"<{SENDER}>".encode()
    assert rest == lf(sent)
    return received


def stuffed(msg):
    return msg.replace(b"\r\n.", b"\r\n..") + b".\r\n"


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_lhlo_and_delivery(mta, unix):
    with mta.lmtp(unix=unix) as c:
        r = c.ehlo(verb="LHLO")
        kw = c.keywords(r)
        for k in ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME"):
            assert k in kw, (k, r.lines)
        c.expect(f"MAIL FROM:<{SENDER}>", 250, "2.")
        c.expect(f"RCPT TO:<{USER}>", 250, "2.")
        c.expect("DATA", 354)
        c.send(stuffed(message()))
        r = c.reply()
        assert r.code == 250 and r.enhanced.startswith("2."), r
        assert not c.pending(0.2), bytes(c.buf)  # one recipient, one reply
        c.expect("QUIT", 221)
    received = one(mta, USER, message())
    assert b"LMTP" in received.upper(), received  # RFC 3848 "with LMTP"


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_one_reply_per_recipient(mta, unix):
    p = mta
    p.add_user("carol@example.test", "pw")
    with p.lmtp(unix=unix) as c:
        c.ehlo(verb="LHLO")
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.expect("RCPT TO:<nobody@example.test>", 550, "5.1.1")
        c.expect(f"RCPT TO:<{BOB}>", 250)
        c.expect("RCPT TO:<someone@example.org>", 554, "5.7.1")
        c.expect("RCPT TO:<carol@example.test>", 250)
        c.expect("DATA", 354)
        c.send(stuffed(message()))
        replies = c.replies(3)
        assert [r.code for r in replies] == [250, 250, 250], replies
        assert not c.pending(0.2), bytes(c.buf)
        c.expect("NOOP", 250)
    for a in (USER, BOB, "carol@example.test"):
        one(p, a, message())


@pytest.mark.parametrize("order", ["full-first", "full-last"])
def test_full_mailbox_does_not_bounce_the_others(mta, order):
    p = mta
    p.cli("user", "quota", USER, "--bytes", "1K")
    big = message(body=(b"b" * 78 + b"\r\n") * 40)  # about 3 KB: does not fit
    rcpts = [USER, BOB] if order == "full-first" else [BOB, USER]
    with p.lmtp() as c:
        c.ehlo(verb="LHLO")
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        for r in rcpts:
            c.expect(f"RCPT TO:<{r}>", 250)  # alice is not full yet
        c.expect("DATA", 354)
        c.send(stuffed(big))
        replies = dict(zip(rcpts, c.replies(2)))
        assert replies[BOB].code == 250, replies
        r = replies[USER]
        assert (r.code, r.enhanced) in ((552, "5.2.2"), (452, "4.2.2")), r
    one(p, BOB, big)
    assert p.stored(USER) == {}
    wait_for(lambda: not p.partial_files(), 10, "no partial files")


def test_full_mailbox_refused_at_rcpt(mta):
    p = mta
    p.cli("user", "quota", USER, "--messages", "1")
    with p.lmtp() as c:
        c.ehlo(verb="LHLO")
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.data(message(1), 250)
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}>", 452, "4.2.2")
        c.expect(f"RCPT TO:<{BOB}>", 250)
        c.expect("DATA", 354)
        c.send(stuffed(message(2)))
        assert c.reply().code == 250
        assert not c.pending(0.2), bytes(c.buf)
    one(p, USER, message(1))
    one(p, BOB, message(2))


def test_pipelined_lmtp(mta):
    with mta.lmtp(unix=True) as c:
        c.send(b"LHLO relay.example.org\r\n"
               + f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{USER}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n".encode())
        replies = c.replies(5)
        assert [r.code for r in replies] == [250, 250, 250, 250, 354], replies
        c.send(stuffed(message()) + b"QUIT\r\n")
        assert [r.code for r in c.replies(3)] == [250, 250, 221]
    one(mta, USER, message())
    one(mta, BOB, message())


def test_lmtp_bdat_one_reply_per_recipient(mta):
    with mta.lmtp() as c:
        kw = c.keywords(c.ehlo(verb="LHLO"))
        if "CHUNKING" not in kw:
            pytest.skip("the LMTP server does not advertise CHUNKING")
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.expect(f"RCPT TO:<{BOB}>", 250)
        m = message()
        c.send(b"BDAT 20\r\n" + m[:20])
        assert c.reply().code == 250
        c.send(b"BDAT %d LAST\r\n" % (len(m) - 20) + m[20:])
        assert [r.code for r in c.replies(2)] == [250, 250]
        assert not c.pending(0.2), bytes(c.buf)
    one(mta, USER, message())
    one(mta, BOB, message())


def test_lmtp_mail_comes_back_over_pop3(mta):
    with mta.lmtp(unix=True) as c:
        c.ehlo(verb="LHLO")
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.data(message(), 250)
    stored = mta.stored_list(USER)[0]
    with mta.session(USER, PASSWORD) as c:
        c.ok("RETR 1")
        lines = c.multiline()
        c.ok("QUIT")
    assert b"\r\n".join(lines) + b"\r\n" == stored.replace(b"\n", b"\r\n")
    assert (b"\r\n".join(lines) + b"\r\n").endswith(message())
