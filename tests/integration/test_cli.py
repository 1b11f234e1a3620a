"""The admin commands: init, check, domain and user management, and their
errors (exit status non-zero, one clear line on stderr, nothing half-done)."""

import json
import os
import re
import sqlite3
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness import PASSWORD, PILLAR_BIN, USER, is_root, set_key


def run(*args, input=None, env=None, cwd=None):
    r = subprocess.run([PILLAR_BIN, *map(str, args)], capture_output=True, timeout=60,
                       input=input.encode() if isinstance(input, str) else input, env=env,
                       cwd=cwd, stdin=subprocess.DEVNULL if input is None else None)
    r.stdout_text = r.stdout.decode(errors="replace")
    r.stderr_text = r.stderr.decode(errors="replace")
    return r


def assert_error(r, *words):
    """A failed command: non-zero exit, one non-empty line on stderr that
    mentions each of words."""
    assert r.returncode != 0, f"expected failure, got 0: {r.stdout_text}"
    lines = [l for l in r.stderr_text.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one error line, got: {r.stderr_text!r}"
    for w in words:
        assert w.lower() in lines[0].lower(), f"{w!r} not in {lines[0]!r}"


@pytest.fixture
def workdir():
    base = Path(tempfile.mkdtemp(prefix="pillar-cli-"))
    os.chmod(base, 0o755)
    yield base
    import shutil

    shutil.rmtree(base, ignore_errors=True)


# -- init ---------------------------------------------------------------------


def test_init_creates_instance(workdir):
    d = workdir / "inst"
    r = run("init", d)
    assert r.returncode == 0, r.stderr_text
    conf = (d / "pillar.conf").read_text()
    assert re.search(rf"^state_dir\s*=\s*{re.escape(str(d.resolve()))}\s*$", conf, re.M), conf
    assert re.search(r"^pop3_listen\s*=\s*127\.0\.0\.1:1110\s*$", conf, re.M), conf
    assert re.search(r"^run_as\s*=\s*\S+", conf, re.M), conf
    assert (d / "directory.db").is_file()
    assert (d / "auth" / "secrets.db").is_file()
    assert (d / "mail").is_dir()
    # The generated config is valid as it stands.
    r = run("check", "-c", d / "pillar.conf")
    assert r.returncode == 0, r.stderr_text


def test_init_with_relative_path_writes_absolute_state_dir(workdir):
    r = run("init", "rel", cwd=workdir)
    assert r.returncode == 0, r.stderr_text
    conf = (workdir / "rel" / "pillar.conf").read_text()
    assert re.search(rf"^state_dir\s*=\s*{re.escape(str((workdir / 'rel').resolve()))}\s*$",
                     conf, re.M), conf


@pytest.mark.skipif(not is_root(), reason="system account only when run as root")
def test_init_as_root_creates_account_and_owns_state(workdir):
    import pwd

    d = workdir / "inst"
    assert run("init", d).returncode == 0
    conf = (d / "pillar.conf").read_text()
    account = re.search(r"^run_as\s*=\s*(\S+)", conf, re.M).group(1)
    pw = pwd.getpwnam(account)
    assert pw.pw_uid != 0
    for path in (d / "directory.db", d / "mail"):
        assert os.stat(path).st_uid == pw.pw_uid, path
    # state_dir is root's: run_as's group may add files, the sticky bit
    # keeps it from moving anyone else's.
    st = os.stat(d)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, pw.pw_gid, 0o1775)
    # The secrets are another account's, and only its.
    auth = pwd.getpwnam("pillar-auth")
    assert auth.pw_uid not in (0, pw.pw_uid)
    for path, mode in ((d / "auth", 0o700), (d / "auth" / "secrets.db", 0o600)):
        st = os.stat(path)
        assert (st.st_uid, st.st_mode & 0o7777) == (auth.pw_uid, mode), path


def test_init_refuses_existing_instance(workdir):
    d = workdir / "inst"
    assert run("init", d).returncode == 0
    conf = d / "pillar.conf"
    conf.write_text(conf.read_text() + "# local edit\n")
    before = conf.read_bytes()
    db_before = (d / "directory.db").read_bytes()
    r = run("init", d)
    assert_error(r, str(d))
    assert conf.read_bytes() == before
    assert (d / "directory.db").read_bytes() == db_before


def test_init_demo(workdir):
    d = workdir / "inst"
    r = run("init", d, "--demo")
    assert r.returncode == 0, r.stderr_text
    pw_file = d / "demo-password"
    password = pw_file.read_text().strip()
    assert len(password) >= 8
    assert stat.S_IMODE(os.stat(pw_file).st_mode) & 0o077 == 0, "demo-password readable by others"
    conf = ["-c", d / "pillar.conf"]
    assert "example.test" in run("domain", "list", *conf).stdout_text
    assert "demo@example.test" in run("user", "list", *conf).stdout_text
    mails = [p for sub in ("new", "cur") for p in (d / "mail" / "example.test" / "demo" / sub).iterdir()]
    assert len(mails) == 3


def test_init_demo_serves_three_messages(make_pillar):
    p = make_pillar(domain=False, init_args=("--demo",))
    password = (p.dir / "demo-password").read_text().strip()
    with p.session("demo@example.test", password) as c:
        assert c.stat()[0] == 3
        for i in (1, 2, 3):
            c.ok(f"RETR {i}")
            assert c.multiline()
        c.ok("QUIT")


# -- check --------------------------------------------------------------------


def inst(workdir):
    d = workdir / "inst"
    r = run("init", d)
    assert r.returncode == 0, r.stderr_text
    return d / "pillar.conf"


def test_check_reports_unknown_key_with_file_and_line(workdir):
    conf = inst(workdir)
    lines = conf.read_text().splitlines()
    lines.append("no_such_key = 1")
    conf.write_text("\n".join(lines) + "\n")
    r = run("check", "-c", conf)
    assert r.returncode != 0
    assert f"{conf}:{len(lines)}" in r.stderr_text, r.stderr_text
    assert "no_such_key" in r.stderr_text


@pytest.mark.parametrize("key,value", [
    ("login_timeout", "soon"),
    ("auth_failure_delay", "-1s"),
    ("workers", "many"),
    ("pop3_listen", "127.0.0.1"),
    ("pop3_listen", "127.0.0.1:99999"),
    ("max_connections_per_ip", "-3"),
    ("plaintext_auth", "sometimes"),
    ("pop3_idle_timeout", "1m"),
])
def test_check_reports_bad_values(workdir, key, value):
    conf = inst(workdir)
    lineno = set_key(conf, key, value)
    r = run("check", "-c", conf)
    assert r.returncode != 0, f"{key} = {value} accepted"
    assert f"{conf}:{lineno}" in r.stderr_text, r.stderr_text
    assert key in r.stderr_text


@pytest.mark.parametrize("key,value", [
    ("login_timeout", "3s"),
    ("auth_failure_delay", "300ms"),
    ("pop3_idle_timeout", "15m"),
    ("pop3_idle_timeout", "1h"),
    ("workers", "3"),
    ("max_connections_per_ip", "5"),
    ("plaintext_auth", "always"),
    ("hostname", "mail.example.test"),
])
def test_check_accepts_good_values(workdir, key, value):
    conf = inst(workdir)
    with open(conf, "a") as f:
        f.write("\n# a comment\n   \n")
    set_key(conf, key, value)
    r = run("check", "-c", conf)
    assert r.returncode == 0, r.stderr_text


def test_check_reports_every_problem(workdir):
    conf = inst(workdir)
    with open(conf, "a") as f:
        f.write("bogus_one = 1\nbogus_two = 2\n")
    set_key(conf, "login_timeout", "never")
    r = run("check", "-c", conf)
    assert r.returncode != 0
    for w in ("bogus_one", "login_timeout", "bogus_two"):
        assert w in r.stderr_text, r.stderr_text


def test_check_missing_file(workdir):
    r = run("check", "-c", workdir / "nope.conf")
    assert r.returncode != 0
    assert "nope.conf" in r.stderr_text


def test_config_from_environment(workdir):
    conf = inst(workdir)
    env = dict(os.environ, PILLAR_CONF=str(conf))
    r = run("domain", "add", "env.example", env=env)
    assert r.returncode == 0, r.stderr_text
    assert "env.example" in run("domain", "list", "-c", conf).stdout_text


# -- domains and users ------------------------------------------------------------


def test_domain_add_list_del(workdir):
    conf = inst(workdir)
    c = ["-c", conf]
    assert run("domain", "add", *c, "one.example").returncode == 0
    assert run("domain", "add", *c, "Two.Example").returncode == 0
    out = run("domain", "list", *c).stdout_text
    assert "one.example" in out and "two.example" in out
    assert_error(run("domain", "add", *c, "one.example"), "one.example")
    assert run("domain", "del", *c, "one.example").returncode == 0
    out = run("domain", "list", *c).stdout_text
    assert "one.example" not in out and "two.example" in out
    assert_error(run("domain", "del", *c, "one.example"), "one.example")


@pytest.mark.parametrize("bad", ["", "no spaces.example", "a.-bad.example", "a..b", "x/y.example",
                                 "a" * 300 + ".example"])
def test_domain_add_rejects_bad_names(workdir, bad):
    conf = inst(workdir)
    assert_error(run("domain", "add", "-c", conf, bad))
    out = run("domain", "list", "-c", conf).stdout_text
    assert "." not in out, f"a domain was added: {out}"


def test_domain_del_refused_while_it_has_mailboxes(workdir):
    conf = inst(workdir)
    c = ["-c", conf]
    run("domain", "add", *c, "example.test")
    assert run("user", "add", *c, "a@example.test", "--password-stdin", input="pw-123456\n").returncode == 0
    assert_error(run("domain", "del", *c, "example.test"), "example.test")
    assert "example.test" in run("domain", "list", *c).stdout_text


def test_user_add_list_del(workdir):
    conf = inst(workdir)
    c = ["-c", conf]
    run("domain", "add", *c, "example.test")
    r = run("user", "add", *c, "a@example.test", "--password-stdin", input="first-pw-1\n")
    assert r.returncode == 0, r.stderr_text
    r = run("user", "add", *c, "B@Example.Test", "--password-stdin", input="second-pw-2\n")
    assert r.returncode == 0, r.stderr_text
    out = run("user", "list", *c).stdout_text
    assert "a@example.test" in out and "b@example.test" in out
    assert_error(run("user", "add", *c, "a@example.test", "--password-stdin", input="x-pw-3\n"),
                 "a@example.test")
    assert run("user", "del", *c, "a@example.test").returncode == 0
    out = run("user", "list", *c).stdout_text
    assert "a@example.test" not in out and "b@example.test" in out
    assert_error(run("user", "del", *c, "a@example.test"), "a@example.test")


@pytest.mark.parametrize("address", ["nodomain", "a@unknown.example", "@example.test", "a@",
                                     "a b@example.test", "../x@example.test", ".a@example.test",
                                     "a/b@example.test", "a@b@example.test"])
def test_user_add_rejects_bad_addresses(workdir, address):
    conf = inst(workdir)
    run("domain", "add", "-c", conf, "example.test")
    assert_error(run("user", "add", "-c", conf, address, "--password-stdin", input="pw-123456\n"))
    out = run("user", "list", "-c", conf).stdout_text
    assert "@" not in out, f"a mailbox was added: {out}"
    # Nothing was created in the mail store either.
    mail = conf.parent / "mail"
    assert not any(p.name.startswith(".") or p.name == "x" for p in mail.rglob("*"))


def test_user_add_refuses_empty_password(workdir):
    conf = inst(workdir)
    run("domain", "add", "-c", conf, "example.test")
    assert_error(run("user", "add", "-c", conf, "a@example.test", "--password-stdin", input="\n"))
    assert_error(run("user", "add", "-c", conf, "a@example.test", "--password-stdin", input=""))
    assert "a@example.test" not in run("user", "list", "-c", conf).stdout_text


def test_passwords_stored_as_yescrypt_in_wal_database(workdir):
    conf = inst(workdir)
    run("domain", "add", "-c", conf, "example.test")
    secret = "Very-Distinct-Secret-4711"
    assert run("user", "add", "-c", conf, "a@example.test", "--password-stdin",
               input=secret + "\n").returncode == 0
    db = conf.parent / "auth" / "secrets.db"
    raw = b"".join(p.read_bytes() for p in conf.parent.glob("directory.db*"))
    raw_secrets = b"".join(p.read_bytes() for p in db.parent.glob("secrets.db*"))
    assert secret.encode() not in raw + raw_secrets, "plaintext password in the directory"
    assert b"$y$" not in raw, "a hash in directory.db, outside the secrets"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        hashes = []
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            for row in con.execute(f'SELECT * FROM "{table}"'):
                hashes += [v for v in row if isinstance(v, str) and v.startswith("$")]
    finally:
        con.close()
    assert any(h.startswith("$y$") for h in hashes), hashes


def test_user_commands_with_json(workdir):
    conf = inst(workdir)
    run("domain", "add", "-c", conf, "example.test")
    run("user", "add", "-c", conf, "a@example.test", "--password-stdin", input="pw-123456\n")
    r = run("user", "list", "-c", conf, "--json")
    assert r.returncode == 0, r.stderr_text
    assert "a@example.test" in json.dumps(json.loads(r.stdout_text))
    r = run("domain", "list", "-c", conf, "--json")
    assert r.returncode == 0, r.stderr_text
    assert "example.test" in json.dumps(json.loads(r.stdout_text))


def test_commands_need_an_existing_config(workdir):
    r = run("domain", "list", "-c", workdir / "missing.conf")
    assert r.returncode != 0
    assert "missing.conf" in r.stderr_text


def test_help_lists_commands():
    r = run("help")
    assert r.returncode == 0
    for cmd in ("init", "serve", "check", "domain", "user"):
        assert re.search(rf"\b{cmd}\b", r.stdout_text + r.stderr_text), cmd
    for sub in (["serve"], ["init"], ["check"], ["domain"], ["user"]):
        r = run(*sub, "--help")
        assert r.returncode == 0, (sub, r.stderr_text)
        assert (r.stdout_text + r.stderr_text).strip()


def test_unknown_subcommand():
    r = run("frobnicate")
    assert r.returncode != 0
    assert "frobnicate" in r.stderr_text


# -- effects on the running server -------------------------------------------------


def test_user_passwd_changes_login(alice):
    alice.cli("user", "passwd", USER, "--password-stdin", input="New-Password-77\n")
    with alice.conn() as c:
        c.ok("USER " + USER)
        c.err("PASS " + PASSWORD)
    with alice.session(USER, "New-Password-77") as c:
        c.ok("QUIT")
    r = alice.cli("user", "passwd", "nobody@example.test", "--password-stdin",
                  input="x-pw-1234\n", check=False)
    assert_error(r, "nobody@example.test")


def test_user_added_while_running_can_log_in(pillar):
    pillar.add_user("late@example.test", "late-Pass-1")
    with pillar.session("late@example.test", "late-Pass-1") as c:
        assert c.ok("STAT") == b"+OK 0 0"
        c.ok("QUIT")


def test_deleted_user_cannot_log_in(mailbox):
    p, _ = mailbox
    p.cli("user", "del", USER)
    with p.conn() as c:
        c.ok("USER " + USER)
        c.err("PASS " + PASSWORD)


def test_serve_refuses_a_bad_config(make_pillar):
    p = make_pillar(start=False)
    p.configure(no_such_key="1")
    r = subprocess.run([PILLAR_BIN, "serve", "-c", str(p.conf), "--foreground"],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert b"no_such_key" in r.stderr


def test_serve_fails_cleanly_when_port_is_taken(make_pillar):
    import socket

    p = make_pillar(start=False)
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", p.port))
    blocker.listen(1)
    try:
        r = subprocess.run([PILLAR_BIN, "serve", "-c", str(p.conf), "--foreground"],
                           capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        assert r.returncode != 0
        assert str(p.port).encode() in r.stderr
    finally:
        blocker.close()


# -- aliases, quotas and pillar deliver -------------------------------------------

EX_USAGE, EX_DATAERR, EX_NOUSER, EX_CANTCREAT, EX_TEMPFAIL = 64, 65, 67, 73, 75


def users(conf, *addresses, domain="example.test"):
    c = ["-c", conf]
    if domain:
        assert run("domain", "add", *c, domain).returncode == 0
    for a in addresses:
        r = run("user", "add", *c, a, "--password-stdin", input="pw-123456\n")
        assert r.returncode == 0, r.stderr_text


def maildir(conf, address):
    local, domain = address.split("@")
    return Path(conf).parent / "mail" / domain / local


def stored(conf, address):
    """Contents of the messages in new/, checking every name's S= and W=."""
    out = []
    d = maildir(conf, address) / "new"
    for name in sorted(os.listdir(d)):
        data = (d / name).read_bytes()
        m = re.match(r"^([\x21-\x7e]{1,70}?),S=(\d+),W=(\d+)$", name)
        assert m, name
        assert int(m.group(2)) == len(data), name
        assert int(m.group(3)) == len(data) + data.count(b"\n") - data.count(b"\r\n"), name
        out.append(data)
    return out


def leftovers(conf):
    """Files in the spool and in any mailbox's tmp/: none after a delivery."""
    mail = Path(conf).parent / "mail"
    found = []
    for dirpath, _, files in os.walk(mail):
        if dirpath.endswith("/tmp") or "/.spool" in dirpath + "/":
            found += [os.path.join(dirpath, f) for f in files]
    return found


def deliver(conf, *args, input=b"Subject: t\n\nhello\n"):
    return run("deliver", "-c", conf, *args, input=input)


def test_domain_add_mentions_postmaster(workdir):
    conf = inst(workdir)
    r = run("domain", "add", "-c", conf, "example.test")
    assert r.returncode == 0, r.stderr_text
    assert "postmaster@example.test" in r.stdout_text
    assert "first mailbox" in r.stdout_text


def test_alias_add_list_del(workdir):
    conf = inst(workdir)
    c = ["-c", conf]
    users(conf, "a@example.test", "b@example.test")
    r = run("alias", "add", *c, "Team@example.test", "a@example.test", "B@example.test")
    assert r.returncode == 0, r.stderr_text
    assert run("alias", "add", *c, "all@example.test", "team@example.test").returncode == 0
    out = run("alias", "list", *c).stdout_text
    assert re.search(r"^team@example\.test\s+a@example\.test, b@example\.test$", out, re.M), out
    assert re.search(r"^all@example\.test\s+team@example\.test$", out, re.M), out
    js = json.loads(run("alias", "list", *c, "--json").stdout_text)
    assert {"address": "team@example.test", "targets": ["a@example.test", "b@example.test"]} in js
    assert json.loads(run("alias", "list", *c, "example.test", "--json").stdout_text) == js

    # refusals: one line, a precise status, and nothing changed
    r = run("alias", "add", *c, "x@example.test", "nobody@example.test")
    assert_error(r, "nobody@example.test")
    assert r.returncode == EX_NOUSER
    r = run("alias", "add", *c, "x@other.example", "a@example.test")
    assert_error(r, "other.example")
    assert r.returncode == EX_NOUSER
    r = run("alias", "add", *c, "a@example.test", "b@example.test")
    assert_error(r, "a@example.test")
    assert r.returncode == EX_CANTCREAT
    r = run("alias", "add", *c, "team@example.test", "all@example.test")
    assert_error(r, "loop")
    assert r.returncode == EX_DATAERR
    # a refused target takes back the ones before it in the same command
    r = run("alias", "add", *c, "new@example.test", "a@example.test", "new@example.test")
    assert r.returncode != 0
    assert "new@example.test" not in run("alias", "list", *c).stdout_text
    assert run("alias", "add", *c).returncode == EX_USAGE
    assert run("alias", "add", *c, "x@example.test").returncode == EX_USAGE
    assert run("alias", "add", *c, "bad address", "a@example.test").returncode == EX_DATAERR

    # del one target, then the alias
    r = run("alias", "del", *c, "team@example.test", "b@example.test")
    assert r.returncode == 0, r.stderr_text
    assert re.search(r"^team@example\.test\s+a@example\.test$",
                     run("alias", "list", *c).stdout_text, re.M)
    r = run("alias", "del", *c, "team@example.test", "b@example.test")
    assert_error(r, "b@example.test")
    assert r.returncode == EX_NOUSER
    assert run("alias", "del", *c, "all@example.test").returncode == 0
    r = run("alias", "del", *c, "all@example.test")
    assert_error(r, "all@example.test")
    assert r.returncode == EX_NOUSER
    assert "all@" not in run("alias", "list", *c).stdout_text


def test_user_del_removes_the_mailbox_from_aliases(workdir):
    conf = inst(workdir)
    c = ["-c", conf]
    users(conf, "a@example.test", "b@example.test")
    assert run("alias", "add", *c, "team@example.test", "a@example.test", "b@example.test").returncode == 0
    r = run("user", "del", *c, "b@example.test")
    assert r.returncode == 0, r.stderr_text
    assert "team@example.test" in r.stdout_text
    out = run("alias", "list", *c).stdout_text
    assert "b@example.test" not in out and "a@example.test" in out


def test_user_quota(workdir):
    conf = inst(workdir)
    c = ["-c", conf]
    users(conf, "a@example.test")
    r = run("user", "quota", *c, "a@example.test", "--bytes", "10M", "--messages", "500")
    assert r.returncode == 0, r.stderr_text
    js = json.loads(run("user", "list", *c, "--json").stdout_text)
    assert js[0]["quota_bytes"] == 10 * 1024 * 1024 and js[0]["quota_messages"] == 500
    # one limit at a time; the other stays
    assert run("user", "quota", *c, "a@example.test", "--bytes", "0").returncode == 0
    js = json.loads(run("user", "list", *c, "--json").stdout_text)
    assert js[0]["quota_bytes"] == 0 and js[0]["quota_messages"] == 500
    for bad in (["--bytes", "10X"], ["--messages", "-1"], ["--messages", "1K"], []):
        r = run("user", "quota", *c, "a@example.test", *bad)
        assert_error(r)
        assert r.returncode == EX_USAGE, bad
    r = run("user", "quota", *c, "nobody@example.test", "--bytes", "1G")
    assert_error(r, "nobody@example.test")
    assert r.returncode == EX_NOUSER


def test_deliver_stores_lf_and_every_other_byte(workdir):
    conf = inst(workdir)
    users(conf, "a@example.test")
    body = bytes(range(256)) + b"\r\nline two\r\nbare CR \r here\r\n\r\n.\r\n..dots\r\nlast"
    msg = b"From: s@remote.example\r\nSubject: 8-bit\r\n\r\n" + body
    r = deliver(conf, "-f", "s@remote.example", "a@example.test", input=msg)
    assert r.returncode == 0, r.stderr_text
    assert r.stderr_text == ""
    [data] = stored(conf, "a@example.test")
    m = re.match(rb"Return-Path: <s@remote\.example>\n"
                 rb"Received: from local \(uid \d+\) by \S+ \(Pillar\) with local id \S+; "
                 rb"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\n", data)
    assert m, data[:300]
    assert data[m.end():] == msg.replace(b"\r\n", b"\n")
    assert b"\r here" in data  # a bare CR is kept
    assert leftovers(conf) == []


def test_deliver_null_sender_and_lf_input(workdir):
    conf = inst(workdir)
    users(conf, "a@example.test")
    for sender in ([], ["-f", ""], ["-f", "<>"]):
        r = deliver(conf, *sender, "a@example.test", input=b"Subject: n\n\nx\n")
        assert r.returncode == 0, r.stderr_text
    for data in stored(conf, "a@example.test"):
        assert data.startswith(b"Return-Path: <>\n")
        assert data.endswith(b"\nSubject: n\n\nx\n")


def test_deliver_aliases_postmaster_and_one_copy_per_mailbox(workdir):
    conf = inst(workdir)
    c = ["-c", conf]
    users(conf, "first@example.test", "a@example.test", "b@example.test")
    assert run("alias", "add", *c, "team@example.test", "a@example.test", "b@example.test").returncode == 0
    r = deliver(conf, "team@example.test", "A@Example.Test", "postmaster@example.test")
    assert r.returncode == 0, r.stderr_text
    assert len(stored(conf, "a@example.test")) == 1
    assert len(stored(conf, "b@example.test")) == 1
    assert len(stored(conf, "first@example.test")) == 1  # postmaster: the first mailbox
    # the copies share one file on one file system
    inodes = {os.stat(maildir(conf, a) / "new" / os.listdir(maildir(conf, a) / "new")[0]).st_ino
              for a in ("a@example.test", "b@example.test", "first@example.test")}
    assert len(inodes) == 1
    assert deliver(conf, "<Postmaster>").returncode == 0
    assert len(stored(conf, "first@example.test")) == 2
    assert leftovers(conf) == []


@pytest.mark.parametrize("args,status,words", [
    ([], EX_USAGE, ["rcpt"]),
    (["--bogus", "a@example.test"], EX_USAGE, ["--bogus"]),
    (["not an address"], EX_USAGE, ["not an address"]),
    (["-f", "bad sender", "a@example.test"], EX_USAGE, ["bad sender"]),
    (["nobody@example.test"], EX_NOUSER, ["nobody@example.test"]),
    (["a@example.test", "nobody@example.test"], EX_NOUSER, ["nobody@example.test"]),
    (["a@elsewhere.example"], EX_NOUSER, ["a@elsewhere.example"]),
])
def test_deliver_refusals(workdir, args, status, words):
    conf = inst(workdir)
    users(conf, "a@example.test")
    r = deliver(conf, *args)
    assert_error(r, *words)
    assert r.returncode == status
    assert stored(conf, "a@example.test") == []
    assert leftovers(conf) == []


def test_deliver_too_large_is_permanent(workdir):
    conf = inst(workdir)
    users(conf, "a@example.test")
    set_key(conf, "max_message_size", "1K")
    ok = b"Subject: s\r\n\r\n" + b"x" * 900
    assert deliver(conf, "a@example.test", input=ok).returncode == 0
    r = deliver(conf, "a@example.test", input=b"Subject: s\r\n\r\n" + b"x" * 2000)
    assert_error(r, "max_message_size")
    assert r.returncode == EX_CANTCREAT
    assert len(stored(conf, "a@example.test")) == 1
    assert leftovers(conf) == []


def test_deliver_missing_maildir_is_permanent(workdir):
    conf = inst(workdir)
    users(conf, "a@example.test")
    import shutil

    shutil.rmtree(maildir(conf, "a@example.test"))
    r = deliver(conf, "a@example.test")
    assert_error(r, "a@example.test")
    assert r.returncode == EX_CANTCREAT
    assert leftovers(conf) == []


def test_deliver_over_quota_is_temporary(workdir):
    conf = inst(workdir)
    c = ["-c", conf]
    users(conf, "a@example.test", "b@example.test")
    assert run("user", "quota", *c, "a@example.test", "--messages", "1").returncode == 0
    assert deliver(conf, "a@example.test").returncode == 0
    # full at the start: nothing stored, for either recipient
    r = deliver(conf, "b@example.test", "a@example.test")
    assert_error(r, "a@example.test", "quota")
    assert r.returncode == EX_TEMPFAIL
    assert len(stored(conf, "a@example.test")) == 1
    assert stored(conf, "b@example.test") == []
    # room, but not for this message
    assert run("user", "quota", *c, "b@example.test", "--bytes", "1K").returncode == 0
    r = deliver(conf, "b@example.test", input=b"Subject: big\n\n" + b"y" * 1500)
    assert_error(r, "b@example.test", "quota")
    assert r.returncode == EX_TEMPFAIL
    assert stored(conf, "b@example.test") == []
    assert leftovers(conf) == []
    # limits lifted: it goes through
    assert run("user", "quota", *c, "a@example.test", "--messages", "0").returncode == 0
    assert deliver(conf, "a@example.test").returncode == 0
    assert len(stored(conf, "a@example.test")) == 2


def test_deliver_then_fetch_over_pop3(alice):
    import poplib

    body = "Grüße\r\n.leading dot\r\n".encode() + bytes(range(0x80, 0x100)) + b"\r\n"
    msg = b"From: s@remote.example\r\nSubject: fetch me\r\n\r\n" + body
    r = alice.cli("deliver", "-f", "s@remote.example", USER, input=msg)
    assert r.returncode == 0, r.stderr_text
    pop = poplib.POP3("127.0.0.1", alice.port, timeout=15)
    try:
        pop.user(USER)
        pop.pass_(PASSWORD)
        count, size = pop.stat()
        assert count == 1
        _, lines, octets = pop.retr(1)
        got = b"\r\n".join(lines) + b"\r\n"
        assert lines[0] == b"Return-Path: <s@remote.example>"
        assert lines[1].startswith(b"Received: from local")
        assert got.endswith(msg)
        # LIST size: the stored file with CRLF line ends
        assert size == len(got)
        pop.quit()
    finally:
        pop.close()


def test_help_lists_alias_and_deliver():
    r = run("help")
    assert "alias" in r.stdout_text and "deliver" in r.stdout_text
    for sub in (["alias"], ["deliver"]):
        r = run(*sub, "--help")
        assert r.returncode == 0, (sub, r.stderr_text)
        assert r.stdout_text.startswith("usage: pillar " + sub[0])
    text = run("deliver", "--help").stdout_text
    for code in ("64", "67", "73", "75"):
        assert code in text
