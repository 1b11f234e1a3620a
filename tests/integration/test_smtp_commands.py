"""SMTP (RFC 5321) on smtp_listen, spoken by Python's smtplib and by a raw
socket where the exact bytes matter: every command, the EHLO keywords,
PIPELINING, SIZE, recipients (unknown, foreign, too many, postmaster@,
aliases) and quotas. Every message the server accepts must be in the
mailbox exactly once, with Return-Path: and Received: first and the rest
unchanged; every message it refuses must leave nothing behind."""

import smtplib

import pytest

from harness import (
    BOB,
    BOB_PASSWORD,
    ENHANCED_RE,
    PASSWORD,
    USER,
    lf,
    split_trace,
    wait_for,
)

SENDER = "sender@example.org"


def message(n=1, body=b"Hello, this is a test.\r\nSecond line.\r\n", to=USER) -> bytes:
    return (
        f"From: <{SENDER}>\r\nTo: <{to}>\r\nSubject: smtp test {n}\r\n"
        f"Message-ID: <smtp-{n}@example.org>\r\n\r\n"
    ).encode() + body


def assert_enhanced(code, msg, want=None):
    """An smtplib reply text starts with an enhanced status code of the same
    class as the reply code (RFC 2034 §4), and equals `want` when given."""
    m = ENHANCED_RE.match(msg)
    assert m, f"no enhanced status code in {code} {msg!r}"
    assert int(m.group(1)) == code // 100, f"enhanced code class differs from {code}: {msg!r}"
    if want is not None:
        assert m.group(0).strip().decode() == want, f"want {want}, got {code} {msg!r}"


def delivered_once(p, address, sent: bytes, sender=SENDER):
    """The mailbox holds exactly one message: `sent` (as sent over SMTP,
    CRLF) stored with LF, after Return-Path: and Received:."""
    files = p.check_names(address)
    assert len(files) == 1, f"{address}: want one message, have {sorted(files)}"
    data = next(iter(files.values()))
    return_path, received, rest = split_trace(data)
    assert return_path == f"<{sender}>".encode(), return_path
    assert received.startswith(b"Received: from "), received
    assert rest == lf(sent), (rest[:300], lf(sent)[:300])
    return data


def nothing_stored(p, *addresses):
    for a in addresses:
        assert p.stored(a) == {}, f"{a} got mail: {sorted(p.stored(a))}"
    wait_for(lambda: not p.partial_files(), 10, "no partial files in the spool or tmp/")


@pytest.fixture
def mta_small(make_pillar):
    """An SMTP instance with max_message_size 10K and alice, bob."""
    p = make_pillar(smtp=True, max_message_size="10K")
    p.add_user(USER, PASSWORD)
    p.add_user(BOB, BOB_PASSWORD)
    return p


# -- greeting and EHLO ----------------------------------------------------------


def test_greeting_and_ehlo_keywords(mta_small):
    p = mta_small
    with p.smtp() as c:
        assert c.greeting.code == 220
        r = c.ehlo()
        kw = c.keywords(r)
        for k in ("PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING"):
            assert k in kw, f"EHLO does not advertise {k}: {r.lines}"
        assert kw.get("SIZE") == ["10240"], r.lines
        c.expect("QUIT", 221, "2.0.0")
    # smtplib sees the same.
    s = p.smtplib()
    code, _ = s.ehlo()
    assert code == 250
    for k in ("pipelining", "8bitmime", "smtputf8", "enhancedstatuscodes", "chunking"):
        assert s.has_extn(k), k
    assert s.esmtp_features["size"] == "10240"
    s.quit()


def test_default_size_is_50m(make_pillar):
    p = make_pillar(smtp=True)
    with p.smtp() as c:
        assert c.keywords(c.ehlo()).get("SIZE") == [str(50 * 1024 * 1024)]


def test_ehlo_twice_and_helo(mta):
    with mta.smtp() as c:
        c.ehlo()
        c.ehlo("other.example.org")
        c.expect("HELO client.example.org", 250)
        # HELO is enough for a whole transaction.
        c.expect(f"MAIL FROM:<{SENDER}>", 250, "2.")
        c.expect(f"RCPT TO:<{USER}>", 250, "2.")
        c.data(message(), 250, "2.")
        c.expect("QUIT", 221, "2.")
    delivered_once(mta, USER, message())


def test_smtplib_helo_transaction(mta):
    s = mta.smtplib()
    code, _ = s.helo()
    assert code == 250
    code, msg = s.mail(SENDER)
    assert code == 250
    assert_enhanced(code, msg)
    code, msg = s.rcpt(USER)
    assert code == 250
    assert_enhanced(code, msg)
    code, msg = s.data(message())
    assert code == 250
    assert_enhanced(code, msg)
    code, msg = s.quit()
    assert code == 221
    delivered_once(mta, USER, message())


# -- the transaction ---------------------------------------------------------


def test_smtplib_transaction_stores_with_trace_headers(mta):
    s = mta.smtplib()
    s.ehlo()
    code, msg = s.mail(SENDER, ["BODY=8BITMIME", "SIZE=300"])
    assert (code, ENHANCED_RE.match(msg) is not None) == (250, True), msg
    code, msg = s.rcpt(USER)
    assert code == 250, msg
    assert_enhanced(code, msg)
    code, msg = s.data(message())
    assert code == 250, msg
    assert_enhanced(code, msg, None)
    s.quit()
    data = delivered_once(mta, USER, message())
    _, received, _ = split_trace(data)
    # RFC 5321 §4.4: the Received: line names the client's EHLO name.
    assert b"client.example.org" in received, received
    # Nothing else got mail.
    assert mta.stored(BOB) == {}


def test_null_sender(mta):
    with mta.smtp() as c:
        c.ehlo()
        c.expect("MAIL FROM:<>", 250, "2.")
        c.expect(f"RCPT TO:<{USER}>", 250, "2.")
        c.data(message(), 250, "2.")
    files = mta.stored_list(USER)
    assert len(files) == 1
    assert split_trace(files[0])[0] == b"<>"


def test_two_transactions_in_one_session(mta):
    s = mta.smtplib()
    assert s.sendmail(SENDER, [USER], message(1)) == {}
    assert s.sendmail(SENDER, [BOB], message(2, to=BOB)) == {}
    s.quit()
    delivered_once(mta, USER, message(1))
    delivered_once(mta, BOB, message(2, to=BOB))


def test_rset_discards_the_transaction(mta):
    with mta.smtp() as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.expect("RSET", 250, "2.")
        # The transaction is gone: no DATA, no RCPT without a new MAIL.
        c.expect("DATA", 503, "5.5.")
        c.expect(f"RCPT TO:<{USER}>", 503, "5.5.")
        # A new one works and goes only to its own recipient.
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{BOB}>", 250)
        c.data(message(to=BOB), 250)
    assert mta.stored(USER) == {}
    delivered_once(mta, BOB, message(to=BOB))


def test_smtplib_rset_noop_vrfy_help_quit(mta):
    s = mta.smtplib()
    s.ehlo()
    code, msg = s.noop()
    assert code == 250
    assert_enhanced(code, msg)
    code, msg = s.mail(SENDER)
    assert code == 250
    # NOOP in the middle of a transaction leaves it alone.
    assert s.noop()[0] == 250
    assert s.rcpt(USER)[0] == 250
    code, msg = s.rset()
    assert code == 250
    assert_enhanced(code, msg)
    # VRFY is answered without telling whether the user exists (252).
    for who in (USER, "nobody@example.test", "alice"):
        code, msg = s.verify(who)
        assert code == 252, (who, code, msg)
        assert_enhanced(code, msg)
    code, msg = s.docmd("HELP")
    assert code == 214, msg
    assert_enhanced(code, msg)
    code, msg = s.quit()
    assert code == 221
    assert_enhanced(code, msg)
    assert mta.stored(USER) == {}


def test_quit_closes_the_connection(mta):
    with mta.smtp() as c:
        c.ehlo()
        c.expect("QUIT", 221, "2.")
        assert c.read_to_eof() == b""


def test_sequence_and_syntax_errors(mta):
    with mta.smtp() as c:
        c.ehlo()
        c.expect(f"RCPT TO:<{USER}>", 503, "5.5.")
        c.expect("DATA", 503, "5.5.")
        c.expect("FROB", 500, "5.5.")
        r = c.cmd("MAIL FROM:sender-without-brackets@example.org bogus")
        assert r.code in (501, 553, 555) and r.enhanced and r.enhanced.startswith("5."), r
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"MAIL FROM:<{SENDER}>", 503, "5.5.")  # nested MAIL
        r = c.cmd(f"MAIL FROM:<{SENDER}> FROBNICATE=yes")
        assert r.code in (503, 501, 555), r
        r = c.cmd("DATA")  # no recipient yet: RFC 5321 §3.3 allows 503 or 554
        assert r.code in (503, 554) and r.enhanced and r.enhanced.startswith("5.5."), r
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.data(message(), 250)
    delivered_once(mta, USER, message())


def test_every_reply_has_an_enhanced_status_code(mta):
    # RFC 2034 §3: every reply but the greeting and the answer to EHLO/HELO.
    cmds = [
        "NOOP", "VRFY alice", "HELP", "RSET", "FROB", "RCPT TO:<x@example.test>",
        f"MAIL FROM:<{SENDER}>", "MAIL FROM:<x@example.org>", "RCPT TO:<nobody@example.test>",
        "RCPT TO:<someone@example.org>", f"RCPT TO:<{USER}>", "RSET", "DATA", "NOOP",
        "MAIL FROM:<a@example.org> SIZE=999999999999",
    ]
    with mta.smtp() as c:
        c.ehlo()
        for cmd in cmds:
            r = c.cmd(cmd)
            for line in r.lines:
                m = ENHANCED_RE.match(line)
                assert m, f"{cmd}: reply line without enhanced code: {r}"
                assert int(m.group(1)) == r.code // 100, f"{cmd}: {r}"
        r = c.cmd("QUIT")
        assert r.code == 221 and r.enhanced, r


# -- PIPELINING (RFC 2920) ----------------------------------------------------------


def test_pipelined_transaction_in_one_write(mta):
    with mta.smtp() as c:
        c.ehlo()
        c.send(
            f"MAIL FROM:<{SENDER}>\r\n"
            f"RCPT TO:<{USER}>\r\n"
            f"RCPT TO:<nobody@example.test>\r\n"
            f"RCPT TO:<{BOB}>\r\n"
            f"RCPT TO:<someone@example.org>\r\n"
            "DATA\r\n"
        )
        replies = c.replies(6)
        assert [r.code for r in replies] == [250, 250, 550, 250, 554, 354], replies
        assert replies[2].enhanced == "5.1.1", replies[2]
        assert replies[4].enhanced == "5.7.1", replies[4]
        # The end of the data, the next transaction and QUIT in one more write.
        m2 = message(2)
        c.send(
            message(1) + b".\r\n"
            + f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{USER}>\r\nDATA\r\n".encode()
        )
        replies = c.replies(4)
        assert [r.code for r in replies] == [250, 250, 250, 354], replies
        c.send(m2 + b".\r\nNOOP\r\nRSET\r\nQUIT\r\n")
        replies = c.replies(4)
        assert [r.code for r in replies] == [250, 250, 250, 221], replies
        assert c.read_to_eof() == b""
    got = sorted(split_trace(d)[2] for d in mta.stored_list(USER))
    assert got == sorted([lf(message(1)), lf(message(2))])
    assert [split_trace(d)[2] for d in mta.stored_list(BOB)] == [lf(message(1))]


def test_pipelined_commands_trickled_one_byte_at_a_time(mta):
    with mta.smtp() as c:
        c.ehlo()
        stream = (f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{USER}>\r\nDATA\r\n").encode()
        for b in stream:
            c.send(bytes([b]))
        assert [r.code for r in c.replies(3)] == [250, 250, 354]
        for b in message() + b".\r\n":
            c.send(bytes([b]))
        assert c.reply().code == 250
    delivered_once(mta, USER, message())


def test_many_pipelined_transactions(mta):
    n = 50
    stream = b""
    for i in range(n):
        stream += f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{USER}>\r\nDATA\r\n".encode()
        stream += message(i) + b".\r\n"
    with mta.smtp() as c:
        c.ehlo()
        c.send(stream + b"QUIT\r\n")
        codes = [r.code for r in c.replies(4 * n + 1, timeout=60)]
        assert codes == [250, 250, 354, 250] * n + [221], codes
    got = sorted(split_trace(d)[2] for d in mta.stored_list(USER))
    assert got == sorted(lf(message(i)) for i in range(n))


# -- SIZE (RFC 1870) -----------------------------------------------------------------


def test_size_above_limit_refused_at_mail(mta_small):
    with mta_small.smtp() as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{SENDER}> SIZE=20000", 552, "5.3.4")
        c.expect(f"MAIL FROM:<{SENDER}> SIZE=10241", 552, "5.3.4")
        # RFC 1870: up to 20 digits, more than fits in 64 bits.
        c.expect(f"MAIL FROM:<{SENDER}> SIZE=18446744073709551615", 552, "5.3.4")
        c.expect(f"MAIL FROM:<{SENDER}> SIZE=99999999999999999999", 552, "5.3.4")
        # The refused MAIL started no transaction.
        c.expect(f"RCPT TO:<{USER}>", 503, "5.5.")
        c.expect(f"MAIL FROM:<{SENDER}> SIZE=10240", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.data(message(), 250)
    delivered_once(mta_small, USER, message())


def test_smtplib_size_refused(mta_small):
    # smtplib declares the size of what it sends (SIZE=) when the server
    # advertises SIZE, so the refusal comes at MAIL.
    s = mta_small.smtplib()
    s.ehlo()
    with pytest.raises(smtplib.SMTPSenderRefused) as e:
        s.sendmail(SENDER, [USER], message(body=b"x" * 20000 + b"\r\n"))
    assert e.value.smtp_code == 552
    assert_enhanced(552, e.value.smtp_error, "5.3.4")
    s.quit()
    nothing_stored(mta_small, USER)


def test_smtplib_oversize_data(mta_small):
    # Without SIZE= at MAIL the server finds out during DATA.
    p = mta_small
    s = p.smtplib()
    s.ehlo()
    assert s.mail(SENDER)[0] == 250
    assert s.rcpt(USER)[0] == 250
    code, msg = s.data(message(body=b"z" * 30000 + b"\r\n"))
    assert code == 552, msg
    assert_enhanced(code, msg, "5.3.4")
    assert s.noop()[0] == 250
    s.quit()
    nothing_stored(p, USER)


# -- recipients --------------------------------------------------------------------


def test_many_recipients_with_one_unknown(mta):
    p = mta
    others = ["carol@example.test", "dave@example.test"]
    for a in others:
        p.add_user(a, "pw-" + a)
    rcpts = [USER, BOB, "nobody@example.test"] + others
    s = p.smtplib()
    refused = s.sendmail(SENDER, rcpts, message())
    s.quit()
    assert list(refused) == ["nobody@example.test"], refused
    code, msg = refused["nobody@example.test"]
    assert code == 550
    assert_enhanced(code, msg, "5.1.1")
    for a in [USER, BOB] + others:
        delivered_once(p, a, message())


def test_all_recipients_unknown(mta):
    s = mta.smtplib()
    with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
        s.sendmail(SENDER, ["nobody@example.test", "ghost@example.test"], message())
    for code, msg in e.value.recipients.values():
        assert code == 550
        assert_enhanced(code, msg, "5.1.1")
    s.quit()
    nothing_stored(mta, USER, BOB)


@pytest.mark.parametrize("rcpt", [
    "someone@example.org",
    "alice@example.test.example.org",
    "alice@sub.example.test",
    "alice@[127.0.0.1]",
])
def test_relay_denied(mta, rcpt):
    with mta.smtp() as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{rcpt}>", 554, "5.7.1")
        r = c.cmd("DATA")
        assert r.code in (503, 554), r  # no valid recipient: no DATA
        c.expect("QUIT", 221)
    nothing_stored(mta, USER, BOB)


def test_source_routes_and_percent_hacks_do_not_relay(mta):
    # RFC 5321 §3.6.1 / §C: a source route may be ignored but must never
    # make the server relay.
    with mta.smtp() as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        for rcpt in ("<@example.test:someone@example.org>", "<someone%example.org@example.test>",
                     "<someone@example.org@example.test>", "<\"someone@example.org\"@example.test>"):
            r = c.cmd(f"RCPT TO:{rcpt}")
            assert r.code >= 500, (rcpt, r)
        c.expect("RSET", 250)
    nothing_stored(mta, USER, BOB)


def test_101st_recipient_is_refused(make_pillar):
    p = make_pillar(smtp=True)
    rcpts = [f"r{i:03d}@example.test" for i in range(101)]
    for a in rcpts:
        p.add_user(a, "pw")
    with p.smtp() as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.send("".join(f"RCPT TO:<{a}>\r\n" for a in rcpts))
        replies = c.replies(101)
        assert [r.code for r in replies[:100]] == [250] * 100, replies
        assert replies[100].code == 452 and replies[100].enhanced == "4.5.3", replies[100]
        c.data(message(), 250)
    for a in rcpts[:100]:
        delivered_once(p, a, message())
    assert p.stored(rcpts[100]) == {}


def test_postmaster_goes_to_the_first_mailbox(make_pillar):
    p = make_pillar(smtp=True)
    p.add_user("first@example.test", "pw1")
    p.add_user("second@example.test", "pw2")
    p.add_domain("other.test")
    p.add_user("zed@other.test", "pw3")
    p.add_user("amy@other.test", "pw4")
    s = p.smtplib()
    assert s.sendmail(SENDER, ["postmaster@example.test"], message(1)) == {}
    # RFC 5321 §2.4 and §4.5.1: "postmaster" in any case; domains ignore case.
    assert s.sendmail(SENDER, ["POSTMASTER@Example.TEST"], message(2)) == {}
    assert s.sendmail(SENDER, ["postmaster@other.test"], message(3)) == {}
    s.quit()
    got = sorted(split_trace(d)[2] for d in p.stored_list("first@example.test"))
    assert got == sorted([lf(message(1)), lf(message(2))])
    assert p.stored("second@example.test") == {}
    delivered_once(p, "zed@other.test", message(3))
    assert p.stored("amy@other.test") == {}


def test_postmaster_alias_overrides_the_default(make_pillar):
    p = make_pillar(smtp=True)
    p.add_user("first@example.test", "pw1")
    p.add_user("second@example.test", "pw2")
    p.cli("alias", "add", "postmaster@example.test", "second@example.test")
    s = p.smtplib()
    assert s.sendmail(SENDER, ["postmaster@example.test"], message()) == {}
    s.quit()
    delivered_once(p, "second@example.test", message())
    assert p.stored("first@example.test") == {}


def test_alias_with_two_targets(mta):
    p = mta
    p.cli("alias", "add", "team@example.test", USER, BOB)
    s = p.smtplib()
    code, msg = s.ehlo()
    assert s.mail(SENDER)[0] == 250
    code, msg = s.rcpt("team@example.test")
    assert code == 250, msg
    assert s.data(message(to="team@example.test"))[0] == 250
    s.quit()
    delivered_once(p, USER, message(to="team@example.test"))
    delivered_once(p, BOB, message(to="team@example.test"))


def test_alias_and_its_target_get_one_copy_each(mta):
    # team@ -> alice, bob; and alice named directly as well: alice must not
    # get the message twice in one transaction.
    p = mta
    p.cli("alias", "add", "team@example.test", USER, BOB)
    s = p.smtplib()
    assert s.sendmail(SENDER, ["team@example.test", USER], message()) == {}
    s.quit()
    delivered_once(p, USER, message())
    delivered_once(p, BOB, message())


# -- quota -------------------------------------------------------------------------


def test_message_quota_full_at_rcpt(mta):
    p = mta
    p.cli("user", "quota", USER, "--messages", "1")
    s = p.smtplib()
    assert s.sendmail(SENDER, [USER], message(1)) == {}
    s.ehlo()
    assert s.mail(SENDER)[0] == 250
    code, msg = s.rcpt(USER)
    assert code == 452, msg
    assert_enhanced(code, msg, "4.2.2")
    # Another recipient in the same transaction is not affected.
    assert s.rcpt(BOB)[0] == 250
    assert s.data(message(2))[0] == 250
    s.quit()
    delivered_once(p, USER, message(1))
    delivered_once(p, BOB, message(2))


def test_byte_quota_full_at_rcpt(mta):
    p = mta
    s = p.smtplib()
    big = message(1, body=b"q" * 2000 + b"\r\n")
    assert s.sendmail(SENDER, [USER], big) == {}
    p.cli("user", "quota", USER, "--bytes", "1K")
    s.ehlo()
    assert s.mail(SENDER)[0] == 250
    code, msg = s.rcpt(USER)
    assert code == 452, msg
    assert_enhanced(code, msg, "4.2.2")
    s.quit()
    delivered_once(p, USER, big)
    # Quota 0 is "none": the mailbox takes mail again.
    p.cli("user", "quota", USER, "--bytes", "0", "--messages", "0")
    s = p.smtplib()
    assert s.sendmail(SENDER, [USER], message(2)) == {}
    s.quit()
    assert len(p.stored(USER)) == 2


def test_byte_quota_exceeded_at_data(mta):
    p = mta
    p.cli("user", "quota", USER, "--bytes", "2K")
    big = message(1, body=(b"w" * 78 + b"\r\n") * 64)  # about 5 KB
    with p.smtp() as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)  # not full yet
        c.data(big, 552, "5.2.2")
        nothing_stored(p, USER)
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.data(message(2), 250)
    delivered_once(p, USER, message(2))


# -- SMTPUTF8 (RFC 6531) -------------------------------------------------------------


def test_smtputf8_sender(mta):
    sender = "jörg@exämple.org"
    msg = ("From: <jörg@exämple.org>\r\nTo: <alice@example.test>\r\nSubject: Grüße\r\n\r\n"
           "Ünïcödé body\r\n").encode()
    with mta.smtp() as c:
        c.ehlo()
        # Without SMTPUTF8 a non-ASCII address is refused (RFC 6531 §3.5).
        r = c.cmd(f"MAIL FROM:<{sender}>".encode())
        assert r.code == 553 and r.enhanced == "5.6.7", r
        c.expect(f"MAIL FROM:<{sender}> SMTPUTF8".encode(), 250)
        c.expect("RCPT TO:<jörg@example.test>".encode(), 550, "5.1.1")
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.data(msg, 250)
    delivered_once(mta, USER, msg, sender=sender)
