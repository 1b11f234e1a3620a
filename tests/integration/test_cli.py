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
    db = conf.parent / "directory.db"
    raw = b"".join(p.read_bytes() for p in conf.parent.glob("directory.db*"))
    assert secret.encode() not in raw, "plaintext password in the directory"
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
