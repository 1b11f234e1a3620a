"""`pillar deliver [-c FILE] [-f SENDER] RCPT...`, the local delivery agent,
end to end: one message on stdin, exit codes from sysexits.h (0 delivered,
64 usage, 67 unknown recipient, 75 temporary failure such as a full
mailbox), and the message then visible over POP3 with the server running."""

import os
import pwd

import pytest

from harness import BOB, BOB_PASSWORD, PASSWORD, USER, crlf, lf, retr_wire, split_trace, vsize

EX_OK, EX_USAGE, EX_NOUSER, EX_TEMPFAIL = 0, 64, 67, 75

MSG = (b"From: <cron@example.org>\nTo: <alice@example.test>\nSubject: from a pipe\n\n"
       b"line one\n.dot line\n..two dots\n8-bit: caf\xc3\xa9 \xe9\n\nlast line\n")


def deliver(p, *args, input=MSG, sender="cron@example.org"):
    extra = ["-f", sender] if sender is not None else []
    return p.cli("deliver", *extra, *args, input=input, check=False)


def stored_one(p, address):
    files = p.check_names(address)
    assert len(files) == 1, (address, sorted(files))
    return next(iter(files.values()))


def test_deliver_then_pop3(alice):
    p = alice
    r = deliver(p, USER)
    assert r.returncode == EX_OK, r.stderr_text
    data = stored_one(p, USER)
    return_path, received, rest = split_trace(data)
    assert return_path == b"<cron@example.org>"
    assert rest == MSG
    # The running server serves it: RETR byte-exact, and DELE works on the
    # file the delivery agent made.
    with p.session(USER, PASSWORD) as c:
        assert c.stat() == (1, vsize(data))
        c.ok("RETR 1")
        assert c.multiline_raw() == retr_wire(data)
        c.ok("DELE 1")
        c.ok("QUIT")
    assert p.stored(USER) == {}


def test_delivered_file_belongs_to_the_mail_owner(alice):
    p = alice
    assert deliver(p, USER).returncode == EX_OK
    md = p.maildir(USER)
    owner = os.stat(p.mail_root).st_uid
    for name in os.listdir(md / "new"):
        st = os.stat(md / "new" / name)
        assert st.st_uid == owner, (name, st.st_uid, owner)
        assert st.st_mode & 0o007 == 0, f"{name} is world-accessible: {oct(st.st_mode)}"
    assert pwd.getpwuid(owner).pw_name == p.conf_value("run_as")


def test_deliver_crlf_input_is_stored_with_lf(alice):
    msg = b"Subject: crlf input\r\n\r\nbody\r\n.\r\nend\r\n"
    assert deliver(alice, USER, input=msg).returncode == EX_OK
    assert split_trace(stored_one(alice, USER))[2] == lf(msg)


def test_deliver_to_several_recipients(alice):
    p = alice
    p.add_user(BOB, BOB_PASSWORD)
    r = deliver(p, USER, BOB)
    assert r.returncode == EX_OK, r.stderr_text
    for a in (USER, BOB):
        assert split_trace(stored_one(p, a))[2] == MSG


def test_deliver_without_sender(alice):
    r = deliver(alice, USER, sender=None)
    assert r.returncode == EX_OK, r.stderr_text
    return_path = split_trace(stored_one(alice, USER))[0]
    assert return_path.startswith(b"<") and return_path.endswith(b">"), return_path


def test_deliver_null_sender(alice):
    assert deliver(alice, USER, sender="").returncode == EX_OK
    assert split_trace(stored_one(alice, USER))[0] == b"<>"


def test_deliver_unknown_recipient(alice):
    r = deliver(alice, "nobody@example.test")
    assert r.returncode == EX_NOUSER, (r.returncode, r.stderr_text)
    assert r.stderr_text.strip() and len(r.stderr_text.strip().splitlines()) == 1, r.stderr_text
    assert "nobody@example.test" in r.stderr_text
    assert alice.stored(USER) == {}


def test_deliver_foreign_domain(alice):
    r = deliver(alice, "someone@example.org")
    assert r.returncode == EX_NOUSER, (r.returncode, r.stderr_text)
    assert alice.stored(USER) == {}


@pytest.mark.parametrize("args", [[], ["-f"], ["--bogus-option", USER]], ids=["no-rcpt", "f-without-arg", "bad-option"])
def test_deliver_usage_errors(alice, args):
    r = alice.cli("deliver", *args, input=MSG, check=False)
    assert r.returncode == EX_USAGE, (args, r.returncode, r.stderr_text)
    assert r.stderr_text.strip()
    assert alice.stored(USER) == {}


def test_deliver_to_alias_and_postmaster(make_pillar):
    p = make_pillar()
    p.add_user("first@example.test", "pw1")
    p.add_user("second@example.test", "pw2")
    p.cli("alias", "add", "both@example.test", "first@example.test", "second@example.test")
    assert deliver(p, "both@example.test").returncode == EX_OK
    assert deliver(p, "postmaster@example.test").returncode == EX_OK
    assert len(p.stored("first@example.test")) == 2
    assert len(p.stored("second@example.test")) == 1


def test_deliver_over_quota_is_a_temporary_failure(alice):
    p = alice
    p.cli("user", "quota", USER, "--messages", "1")
    assert deliver(p, USER).returncode == EX_OK
    r = deliver(p, USER)
    assert r.returncode == EX_TEMPFAIL, (r.returncode, r.stderr_text)
    assert r.stderr_text.strip()
    assert len(p.stored(USER)) == 1
    p.cli("user", "quota", USER, "--bytes", "100")
    p.cli("user", "quota", USER, "--messages", "0")
    r = deliver(p, USER)
    assert r.returncode == EX_TEMPFAIL, (r.returncode, r.stderr_text)
    assert len(p.stored(USER)) == 1
    assert not p.partial_files()


def test_deliver_with_config_from_environment(alice):
    # -c is optional: $PILLAR_CONF names the config.
    env = dict(os.environ, PILLAR_CONF=str(alice.conf))
    r = alice.cli("deliver", "-f", "env@example.org", USER, input=MSG, env=env, conf=False,
                  check=False)
    assert r.returncode == EX_OK, r.stderr_text
    assert split_trace(stored_one(alice, USER))[0] == b"<env@example.org>"


def test_deliver_large_binary_message(alice):
    body = bytes(b for b in range(256) if b not in (10, 13)) * 4000 + b"\n"
    msg = b"Subject: big\n\n" + b"".join(body[i:i + 900] + b"\n" for i in range(0, len(body), 900))
    r = deliver(alice, USER, input=msg)
    assert r.returncode == EX_OK, r.stderr_text
    data = stored_one(alice, USER)
    assert split_trace(data)[2] == msg
    with alice.session(USER, PASSWORD) as c:
        c.ok("RETR 1")
        assert c.multiline_raw(timeout=30) == retr_wire(data)
        c.ok("QUIT")


def test_deliver_while_server_stopped_then_pop3(make_pillar):
    p = make_pillar(start=False)
    p.add_user(USER, PASSWORD)
    assert deliver(p, USER).returncode == EX_OK
    p.start()
    with p.session(USER, PASSWORD) as c:
        assert c.stat()[0] == 1
        c.ok("RETR 1")
        assert b"".join(l + b"\r\n" for l in c.multiline()).endswith(crlf(MSG))
        c.ok("QUIT")
