"""Administration through the real `pillar` binary against a running server:
user rename/del/lock/unlock/show/list, domain del --force, --json output,
mailboxes in use by a POP3 session (refused, or --kick), failures injected
half-way through a rename, and the warnings of `pillar check`.

Run as root (as CI does), the admin commands drop to run_as (`pillar`), so
file permissions set up here apply to them."""

import json
import os
import pwd
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from harness import (BOB, BOB_PASSWORD, PASSWORD, PILLAR_BIN, USER, Closed, SmtpConn, is_root,
                     set_key, simple_message, unset_key)

EX_USAGE, EX_DATAERR, EX_NOUSER, EX_CANTCREAT, EX_TEMPFAIL = 64, 65, 67, 73, 75
OTHER = "other.test"


def one_error(r, *words):
    """A failed command: non-zero exit and one error line naming each word."""
    assert r.returncode != 0, f"expected failure: {r.stdout_text}"
    lines = [l for l in r.stderr_text.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one error line, got {r.stderr_text!r}"
    for w in words:
        assert w.lower() in lines[0].lower(), f"{w!r} not in {lines[0]!r}"
    return lines[0]


def rows(p):
    """{address: row dict} of the directory, read directly: each mailbox's
    row in directory.db with its secrets from auth/secrets.db."""
    con = sqlite3.connect(f"file:{p.dir / 'directory.db'}?mode=ro", uri=True)
    try:
        con.row_factory = sqlite3.Row
        con.execute("ATTACH ? AS auth", (f"file:{p.dir / 'auth' / 'secrets.db'}?mode=ro",))
        return {r["address"]: dict(r) for r in con.execute(
            "SELECT m.*, c.* FROM mailboxes m JOIN auth.credentials c USING (address)")}
    finally:
        con.close()


def aliases(p):
    con = sqlite3.connect(f"file:{p.dir / 'directory.db'}?mode=ro", uri=True)
    try:
        return sorted(con.execute("SELECT address, target FROM aliases"))
    finally:
        con.close()


def pop3_uidls(p, user, password):
    with p.conn() as c:
        c.login(user, password)
        out = c.uidls()
        c.ok("QUIT")
    return [u for _, u in out]


def tree(path: Path):
    """Every file below path with its size: to compare a Maildir before and after."""
    return sorted((str(f.relative_to(path)), f.stat().st_size) for f in path.rglob("*")
                  if f.is_file() and f.name != "pillar-pop3.lock")


@pytest.fixture
def box(make_pillar):
    """A running instance (POP3 and SMTP) with alice holding three messages,
    bob, and a second local domain other.test."""
    p = make_pillar(smtp=True)
    p.add_user(USER, PASSWORD)
    p.add_user(BOB, BOB_PASSWORD)
    p.add_domain(OTHER)
    for i in range(1, 4):
        p.deliver(USER, simple_message(i))
    return p


# -- user show / list ----------------------------------------------------------


def test_show_and_list_count_the_maildir(box):
    p = box
    p.cli("user", "quota", USER, "--bytes", "2G", "--messages", "50000")
    # one more without S=/W= (as another delivery agent would leave it): stat'ed
    extra = b"Subject: no sizes\n\nbody\n"
    p.deliver(USER, extra, sizes=False, subdir="cur")
    files = p.files(USER)
    total = sum((p.maildir(USER) / f).stat().st_size for f in files)
    assert len(files) == 4

    js = json.loads(p.cli("user", "show", USER, "--json").stdout_text)
    assert js["address"] == USER
    assert js["messages"] == 4 and js["bytes"] == total
    assert js["quota_bytes"] == 2 << 30 and js["quota_messages"] == 50000
    assert js["locked"] is False and js["last_login"] is None
    assert abs(js["created"] - time.time()) < 300
    assert js["maildir"] == str(p.maildir(USER)) and js["maildir_error"] is None

    out = p.cli("user", "show", USER).stdout_text
    assert re.search(r"^messages:\s+4$", out, re.M), out
    assert re.search(rf"^bytes:\s+{total} ", out, re.M), out
    assert re.search(r"^quota use:\s+\d+ bytes of 2 GB, 4 of 50000 messages$", out, re.M), out
    assert re.search(r"^last login:\s+never$", out, re.M), out

    # a login shows up as the last login
    pop3_uidls(p, USER, PASSWORD)
    js = json.loads(p.cli("user", "show", USER, "--json").stdout_text)
    assert js["last_login"] is not None and abs(js["last_login"] - time.time()) < 300

    listed = {u["address"]: u for u in json.loads(p.cli("user", "list", "--json").stdout_text)}
    assert set(listed) == {USER, BOB}
    assert listed[USER]["messages"] == 4 and listed[USER]["bytes"] == total
    assert listed[BOB]["messages"] == 0 and listed[BOB]["bytes"] == 0
    out = p.cli("user", "list", "example.test").stdout_text
    line = next(l for l in out.splitlines() if l.startswith(USER))
    assert line.split()[1:3] == ["4", str(total)], line
    assert "of 2 GB, 4 of 50000 messages" in line
    assert json.loads(p.cli("user", "list", OTHER, "--json").stdout_text) == []
    assert p.cli("user", "list", OTHER).stdout_text == ""


def test_sizes_come_from_file_names(box):
    """With S= in the name the file is not stat'ed (or read): a name that
    claims 10 MB is counted as 10 MB. This is what keeps list/show fast on
    100,000-message mailboxes."""
    p = box
    p.deliver(BOB, b"tiny\n", name="1700000999.M1P1.test,S=10485760,W=10485761")
    js = json.loads(p.cli("user", "show", BOB, "--json").stdout_text)
    assert js["messages"] == 1 and js["bytes"] == 10485760
    assert "10 MB, 1 message" in p.cli("user", "show", BOB).stdout_text


def test_show_and_list_errors(box):
    p = box
    r = p.cli("user", "show", "nobody@example.test", check=False)
    one_error(r, "nobody@example.test")
    assert r.returncode == EX_NOUSER
    r = p.cli("user", "list", "missing.test", check=False)
    one_error(r, "missing.test")
    assert r.returncode == EX_NOUSER
    r = p.cli("user", "show", "not-an-address", check=False)
    one_error(r)
    assert r.returncode == EX_DATAERR
    r = p.cli("user", "show", check=False)
    assert r.returncode == EX_USAGE
    r = p.cli("user", "passwd", USER, "--json", check=False)
    assert r.returncode == EX_USAGE


def test_json_everywhere(box):
    p = box
    p.cli("alias", "add", "team@example.test", USER, BOB)
    doms = json.loads(p.cli("domain", "list", "--json").stdout_text)
    assert {d["domain"]: d["mailboxes"] for d in doms} == {"example.test": 2, OTHER: 0}
    al = json.loads(p.cli("alias", "list", "--json").stdout_text)
    assert "team@example.test" in json.dumps(al) and BOB in json.dumps(al)
    with p.conn() as c:
        c.login(USER, PASSWORD)
        who = json.loads(p.cli("who", "--json").stdout_text)
        assert any(s["user"] == USER and s["protocol"].lower().startswith("pop3") for s in who), who
        c.ok("QUIT")


# -- lock / unlock -------------------------------------------------------------


def test_lock_refuses_logins_not_delivery(box):
    p = box
    r = p.cli("user", "lock", USER)
    assert "locked" in r.stdout_text
    assert rows(p)[USER]["locked"] == 1
    with p.conn() as c:
        c.ok(f"USER {USER}")
        assert c.cmd(f"PASS {PASSWORD}") == b"-ERR [AUTH] mailbox locked"
    with p.conn() as c:
        c.ok(f"USER {USER}")
        reply = c.err("PASS wrong-password")
        assert b"locked" not in reply, reply  # a wrong password does not learn the state
    # mail still comes in
    with SmtpConn(p.smtp_port) as s:
        s.ehlo()
        s.expect("MAIL FROM:<sender@example.org>", 250)
        s.expect(f"RCPT TO:<{USER}>", 250)
        s.data(b"Subject: while locked\r\n\r\nstill delivered\r\n")
        s.expect("QUIT", 221)
    p.wait_stored(USER, 4)
    # locking twice is fine and says so
    assert "already" in p.cli("user", "lock", USER).stdout_text
    assert json.loads(p.cli("user", "show", USER, "--json").stdout_text)["locked"] is True

    p.cli("user", "unlock", USER)
    assert rows(p)[USER]["locked"] == 0
    with p.conn() as c:
        c.login(USER, PASSWORD)
        assert c.stat()[0] == 4
        c.ok("QUIT")
    for sub in ("lock", "unlock"):
        r = p.cli("user", sub, "nobody@example.test", check=False)
        one_error(r, "nobody@example.test")
        assert r.returncode == EX_NOUSER


def test_lock_with_kick_ends_open_sessions(box):
    p = box
    with p.conn() as c:
        c.login(USER, PASSWORD)
        c.ok("DELE 1")
        r = p.cli("user", "lock", USER, "--kick")
        assert "1 session" in r.stdout_text, r.stdout_text
        c.read_to_eof()
    assert len(p.files(USER)) == 3  # the kicked session deleted nothing


# -- user del ------------------------------------------------------------------


def test_del_moves_maildir_and_refuses_mail_at_rcpt(box):
    p = box
    before = tree(p.maildir(USER))
    t0 = int(time.time())
    r = p.cli("user", "del", USER)
    kept = Path(re.search(r"mail kept in (\S+)", r.stdout_text).group(1))
    assert kept.parent == p.dir / "deleted"
    m = re.fullmatch(re.escape(USER) + r"\.(\d+)", kept.name)
    assert m and t0 - 5 <= int(m.group(1)) <= time.time() + 5, kept.name
    assert tree(kept) == before
    assert not p.maildir(USER).exists()
    assert USER not in rows(p)
    with SmtpConn(p.smtp_port) as s:
        s.ehlo()
        s.expect("MAIL FROM:<sender@example.org>", 250)
        s.expect(f"RCPT TO:<{USER}>", 550, "5.1.1")
        s.expect(f"RCPT TO:<{BOB}>", 250)
        s.expect("QUIT", 221)
    with p.conn() as c:
        c.ok(f"USER {USER}")
        c.err(f"PASS {PASSWORD}")
    r = p.cli("user", "del", USER, check=False)
    one_error(r, USER)
    assert r.returncode == EX_NOUSER


def test_del_purge_removes_the_files(box):
    p = box
    r = p.cli("user", "del", BOB, "--purge")
    assert "mail removed" in r.stdout_text
    assert not p.maildir(BOB).exists()
    assert not (p.dir / "deleted").exists() or not any((p.dir / "deleted").iterdir())
    # nothing left behind in the domain directory either (no .deleting files)
    assert sorted(os.listdir(p.mail_root / "example.test")) == ["alice"]


def test_del_refused_while_a_pop3_session_is_open_then_kick(box):
    p = box
    uidls = pop3_uidls(p, USER, PASSWORD)
    with p.conn() as c:
        c.login(USER, PASSWORD)
        c.ok("DELE 1")
        r = p.cli("user", "del", USER, check=False)
        one_error(r, USER, "session", "--kick")
        assert r.returncode == EX_TEMPFAIL
        assert p.maildir(USER).is_dir() and USER in rows(p)
        assert len(p.files(USER)) == 3
        # the session is untouched by the refusal
        assert c.stat()[0] == 2

        r = p.cli("user", "del", USER, "--kick")
        assert "1 session" in r.stdout_text and "deleted" in r.stdout_text
        with pytest.raises(Closed):
            c.cmd("STAT")
    kept = Path(re.search(r"mail kept in (\S+)", r.stdout_text).group(1))
    # the kicked session's DELE was not applied: all three are kept
    names = [f.name for sub in ("new", "cur") for f in (kept / sub).iterdir()]
    assert sorted(re.split(r"[,:]", n)[0] for n in names) == sorted(uidls)


# -- user rename ---------------------------------------------------------------


def test_rename_keeps_mail_uidls_and_settings(box):
    p = box
    p.cli("alias", "add", "team@example.test", USER, BOB)
    p.cli("user", "quota", USER, "--bytes", "5M")
    p.cli("user", "lock", USER)
    p.cli("user", "unlock", USER)
    uidls = pop3_uidls(p, USER, PASSWORD)
    before_tree = tree(p.maildir(USER))
    before_row = rows(p)[USER]

    new = f"alicia@{OTHER}"
    r = p.cli("user", "rename", USER, new)
    assert f"renamed to {new}" in r.stdout_text
    assert "team@example.test" in r.stdout_text
    assert not p.maildir(USER).exists()
    assert tree(p.maildir(new)) == before_tree
    after = rows(p)
    assert USER not in after
    for k in ("password_hash", "quota_bytes", "quota_messages", "locked", "created",
              "last_login", "scram_stored_key"):
        assert after[new][k] == before_row[k], k
    assert aliases(p) == sorted([("team@example.test", new), ("team@example.test", BOB)])

    # the same password logs in at the new address, and UIDLs did not change
    assert pop3_uidls(p, new, PASSWORD) == uidls
    with p.conn() as c:
        c.ok(f"USER {USER}")
        c.err(f"PASS {PASSWORD}")
    # mail follows: to the new address, and through the alias
    with SmtpConn(p.smtp_port) as s:
        s.ehlo()
        s.expect("MAIL FROM:<sender@example.org>", 250)
        s.expect(f"RCPT TO:<{USER}>", 550, "5.1.1")
        s.expect(f"RCPT TO:<{new}>", 250)
        s.data(b"Subject: after rename\r\n\r\nhello\r\n")
        s.expect("QUIT", 221)
    p.wait_stored(new, 1)
    assert len(p.files(new)) == 4

    # and back again, within one domain
    p.cli("user", "rename", new, USER)
    assert pop3_uidls(p, USER, PASSWORD)[:3] == uidls


@pytest.mark.parametrize("old,new,status,words", [
    ("nobody@example.test", "x@example.test", EX_NOUSER, ["nobody@example.test"]),
    (USER, BOB, EX_CANTCREAT, [BOB, "exists"]),
    (USER, "team@example.test", EX_CANTCREAT, ["team@example.test", "alias"]),
    (USER, "a@not-local.test", EX_NOUSER, ["not-local.test", "not local"]),
    (USER, USER, EX_DATAERR, [USER]),
    (USER, "bad address", EX_DATAERR, ["bad address"]),
    (USER, "../x@example.test", EX_DATAERR, []),
])
def test_rename_refusals_change_nothing(box, old, new, status, words):
    p = box
    p.cli("alias", "add", "team@example.test", BOB)
    before_rows, before_tree = rows(p), tree(p.mail_root)
    r = p.cli("user", "rename", old, new, check=False)
    one_error(r, *words)
    assert r.returncode == status
    assert rows(p) == before_rows and tree(p.mail_root) == before_tree


def test_rename_usage_errors(box):
    p = box
    for args in (["rename", USER], ["rename", USER, "a@example.test", "b@example.test"],
                 ["rename", USER, "x@example.test", "--purge"],
                 ["quota", USER, "--kick", "--bytes", "1M"]):
        r = p.cli("user", *args, check=False)
        assert r.returncode == EX_USAGE, (args, r.stderr_text)
    assert USER in rows(p)


def test_rename_refuses_a_path_already_on_disk(box):
    p = box
    stray = p.mail_root / "example.test" / "carol"
    stray.mkdir()
    r = p.cli("user", "rename", USER, "carol@example.test", check=False)
    one_error(r, str(stray))
    assert USER in rows(p) and p.maildir(USER).is_dir()


def test_rename_refused_while_a_pop3_session_is_open_then_kick(box):
    p = box
    uidls = pop3_uidls(p, USER, PASSWORD)
    new = "alice2@example.test"
    with p.conn() as c:
        c.login(USER, PASSWORD)
        c.ok("DELE 2")
        r = p.cli("user", "rename", USER, new, check=False)
        one_error(r, USER, "session", "--kick")
        assert r.returncode == EX_TEMPFAIL
        assert USER in rows(p) and new not in rows(p)
        assert p.maildir(USER).is_dir() and not p.maildir(new).exists()
        assert c.stat()[0] == 2  # the session goes on

        r = p.cli("user", "rename", USER, new, "--kick")
        assert "1 session" in r.stdout_text and "renamed" in r.stdout_text
        with pytest.raises(Closed):
            c.cmd("STAT")
    # the DELE of the kicked session was not applied; the UIDLs are the same
    assert pop3_uidls(p, new, PASSWORD) == uidls


def test_rename_kick_when_no_session_is_open(box):
    """--kick with nothing to kick (the server has no session of it) is fine."""
    p = box
    p.cli("user", "rename", USER, "alice3@example.test", "--kick")
    assert "alice3@example.test" in rows(p)


def snapshot(p, address):
    return rows(p).get(address), tree(p.maildir(address)), aliases(p)


def test_rename_target_domain_not_writable_leaves_both_sides(box):
    """The Maildir cannot move (the new domain's directory is read-only for
    run_as): nothing changes, on disk or in the directory."""
    p = box
    p.cli("alias", "add", "team@example.test", USER)
    dom = p.mail_root / OTHER
    dom.mkdir(mode=0o700)
    st = os.stat(p.mail_root)
    os.chown(dom, st.st_uid, st.st_gid)
    before = snapshot(p, USER)
    os.chmod(dom, 0o500)
    try:
        new = f"alice@{OTHER}"
        r = p.cli("user", "rename", USER, new, check=False)
        if not is_root() and os.geteuid() == st.st_uid and r.returncode == 0:
            pytest.skip("the owner ignores the mode here")
        one_error(r, USER, new)
        assert snapshot(p, USER) == before
        assert new not in rows(p)
        assert not (dom / "alice").exists()
    finally:
        os.chmod(dom, 0o700)
    assert pop3_uidls(p, USER, PASSWORD)


def test_rename_directory_update_fails_maildir_moved_back(box):
    """The Maildir has moved when the row update fails (a trigger makes the
    directory refuse it): the Maildir is moved back, the row and aliases are
    as they were, and the new path is gone."""
    p = box
    p.cli("alias", "add", "team@example.test", USER)
    uidls = pop3_uidls(p, USER, PASSWORD)
    before = snapshot(p, USER)
    con = sqlite3.connect(str(p.dir / "directory.db"))
    try:
        con.execute("CREATE TRIGGER refuse_rename BEFORE UPDATE OF address ON mailboxes"
                    " BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
        con.commit()
    finally:
        con.close()
    new = f"alice@{OTHER}"
    r = p.cli("user", "rename", USER, new, check=False)
    one_error(r, "injected failure")
    assert r.returncode != 0
    assert snapshot(p, USER) == before
    assert not p.maildir(new).exists()
    # the new domain's directory made for the move is gone again
    assert not (p.mail_root / OTHER).exists()
    assert pop3_uidls(p, USER, PASSWORD) == uidls


# -- domain del ----------------------------------------------------------------


def test_domain_del_needs_force_and_respects_sessions(box):
    p = box
    r = p.cli("domain", "del", "example.test", check=False)
    one_error(r, "example.test", "--force")
    assert set(rows(p)) == {USER, BOB}
    r = p.cli("domain", "del", "example.test", "--purge", check=False)
    assert r.returncode == EX_USAGE
    with p.conn() as c:
        c.login(USER, PASSWORD)
        c.ok("DELE 1")
        r = p.cli("domain", "del", "example.test", "--force", check=False)
        one_error(r, USER, "--kick")
        assert r.returncode == EX_TEMPFAIL
        assert set(rows(p)) == {USER, BOB}  # nothing was deleted
        r = p.cli("domain", "del", "example.test", "--force", "--kick")
        with pytest.raises(Closed):
            c.cmd("STAT")
    assert rows(p) == {}
    assert "domain example.test deleted" in r.stdout_text
    kept = sorted(os.listdir(p.dir / "deleted"))
    assert [k.rsplit(".", 1)[0] for k in kept] == [USER, BOB][::-1] or \
        sorted(k.rsplit(".", 1)[0] for k in kept) == sorted([USER, BOB])
    alice_kept = next(k for k in kept if k.startswith("alice@"))
    assert len(list((p.dir / "deleted" / alice_kept / "new").iterdir())) == 3
    assert not (p.mail_root / "example.test").exists()
    assert "example.test" not in p.cli("domain", "list").stdout_text
    with SmtpConn(p.smtp_port) as s:
        s.ehlo()
        s.expect("MAIL FROM:<sender@example.org>", 250)
        r = s.cmd(f"RCPT TO:<{USER}>")
        assert r.code >= 500, r  # not a local domain any more
        s.expect("QUIT", 221)


def test_domain_del_force_purge(box):
    p = box
    r = p.cli("domain", "del", "example.test", "--force", "--purge")
    assert r.stdout_text.count("mail removed") == 2
    assert not (p.mail_root / "example.test").exists()
    r = p.cli("domain", "del", "example.test", check=False)
    one_error(r, "example.test")
    assert r.returncode == EX_NOUSER


# -- other error cases -----------------------------------------------------------


def test_add_quota_passwd_errors(box):
    p = box
    r = p.cli("user", "add", USER, "--password-stdin", input="x-pw-12345\n", check=False)
    one_error(r, USER, "exists")
    assert r.returncode == EX_CANTCREAT
    r = p.cli("user", "add", f"carol@{OTHER}", "--password-stdin", input="\n", check=False)
    one_error(r)
    assert f"carol@{OTHER}" not in rows(p)
    r = p.cli("user", "add", f"carol@{OTHER}", "--password-stdin", input="", check=False)
    one_error(r)
    r = p.cli("user", "add", f"carol@{OTHER}", check=False)  # stdin is no terminal
    one_error(r, "--password-stdin")
    r = p.cli("user", "passwd", "nobody@example.test", "--password-stdin", input="pw-123456\n",
              check=False)
    one_error(r, "nobody@example.test")
    assert r.returncode == EX_NOUSER
    for bad in (["--bytes", "2X"], ["--bytes", "-1"], ["--messages", "ten"], []):
        r = p.cli("user", "quota", USER, *bad, check=False)
        one_error(r)
        assert r.returncode == EX_USAGE, bad
    r = p.cli("user", "frobnicate", USER, check=False)
    assert r.returncode == EX_USAGE


# -- pillar check ----------------------------------------------------------------


def check(p, as_user=None):
    kw = {}
    if as_user is not None:
        pw = pwd.getpwnam(as_user)

        def drop():
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)

        kw["preexec_fn"] = drop
    r = subprocess.run([PILLAR_BIN, "check", "-c", str(p.conf)], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL, **kw)
    r.stdout_text, r.stderr_text = r.stdout.decode(), r.stderr.decode()
    return r


def warnings_of(r):
    lines = [l for l in r.stderr_text.splitlines() if l.strip()]
    bad = [l for l in lines if not l.startswith("warning: ")]
    assert not bad, f"lines on stderr that are no warnings: {bad}"
    return lines


def test_check_clean_instance_has_no_warnings(make_pillar):
    p = make_pillar(start=False, tls=True)
    r = check(p)
    assert r.returncode == 0, r.stderr_text
    assert warnings_of(r) == []
    assert r.stdout_text.strip() == f"{p.conf}: ok"


def test_check_warns_about_risky_settings(make_pillar, tmp_path):
    p = make_pillar(start=False, tls=False)
    # no certificate at all (pillar init wrote one into the config)
    unset_key(p.conf, "tls_cert")
    unset_key(p.conf, "tls_key")
    r = check(p)
    assert r.returncode == 0
    w = warnings_of(r)
    assert any("tls_cert" in l and "no TLS certificate" in l for l in w), w

    # plaintext_auth = always: only a listener other hosts can reach is a risk
    set_key(p.conf, "plaintext_auth", "always")
    assert not any("plaintext_auth" in l for l in warnings_of(check(p)))
    with open(p.conf, "a") as f:
        f.write("pop3_listen = 0.0.0.0:31110\n")
    r = check(p)
    assert r.returncode == 0
    w = warnings_of(r)
    assert any("plaintext_auth" in l and "0.0.0.0:31110" in l for l in w), w
    assert "warning" in r.stdout_text


def test_check_warns_about_certificates(make_pillar, tmp_path):
    from harness import make_cert

    p = make_pillar(start=False, tls=True)
    other_cert, other_key = make_cert(tmp_path, name="other")
    set_key(p.conf, "tls_key", str(other_key))  # a key of another certificate
    w = warnings_of(check(p))
    assert any("tls_key" in l and "does not match" in l for l in w), w

    set_key(p.conf, "tls_key", str(tmp_path / "missing.key"))
    w = warnings_of(check(p))
    assert any("tls_key" in l and "missing.key" in l for l in w), w

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    set_key(p.conf, "tls_cert", str(garbage))
    set_key(p.conf, "tls_key", str(p.key))
    r = check(p)
    assert r.returncode == 0
    w = warnings_of(r)
    assert any("tls_cert" in l and "garbage.pem" in l for l in w), w


@pytest.mark.skipif(not is_root(), reason="needs root to give the mail root to another owner")
def test_check_warns_when_run_as_cannot_write(make_pillar):
    p = make_pillar(start=False, tls=True)
    mail = p.mail_root
    st = os.stat(mail)
    os.chown(mail, 0, 0)
    os.chmod(mail, 0o755)
    try:
        r = check(p)
        assert r.returncode == 0
        w = warnings_of(r)
        assert any("mail_root" in l and str(mail) in l and "cannot write" in l for l in w), w
        assert not any("state_dir" in l for l in w), w
    finally:
        os.chown(mail, st.st_uid, st.st_gid)
        os.chmod(mail, st.st_mode & 0o7777)


@pytest.mark.skipif(not is_root(), reason="needs root to give the secrets to another owner")
def test_check_warns_when_the_secrets_are_not_auth_as_s(make_pillar):
    """After a restore as root (or a new auth_as), the auth process could
    not open the secrets: pillar check says so, and how to fix it."""
    p = make_pillar(start=False, tls=True)
    assert not any("auth_as" in l for l in warnings_of(check(p)))
    secrets = p.dir / "auth"
    st = os.stat(secrets)
    os.chown(secrets, 0, 0)
    try:
        w = warnings_of(check(p))
        assert any("auth_as" in l and str(secrets) in l and "chown" in l for l in w), w
    finally:
        os.chown(secrets, st.st_uid, st.st_gid)


def test_check_warns_about_a_missing_run_as(make_pillar):
    p = make_pillar(start=False, tls=True)
    set_key(p.conf, "run_as", "no-such-account-4711")
    r = check(p)
    assert r.returncode == 0
    assert any("run_as" in l and "no-such-account-4711" in l for l in warnings_of(r))


@pytest.mark.skipif(not is_root(), reason="needs root to run the check as another account")
def test_check_warns_about_privileged_ports_when_not_root(make_pillar):
    p = make_pillar(start=False, tls=True)
    set_key(p.conf, "smtp_listen", "127.0.0.1:25")
    run_as = p.conf_value("run_as")
    os.chmod(p.conf, 0o644)
    assert not any("smtp_listen" in l for l in warnings_of(check(p)))  # root may bind it
    r = check(p, as_user=run_as)
    assert r.returncode == 0, r.stderr_text
    w = warnings_of(r)
    assert any("smtp_listen" in l and "port 25" in l for l in w), w


def test_check_errors_still_fail(make_pillar):
    p = make_pillar(start=False)
    lineno = set_key(p.conf, "workers", "many")
    r = check(p)
    assert r.returncode == 1
    assert f"{p.conf}:{lineno}: workers" in r.stderr_text
