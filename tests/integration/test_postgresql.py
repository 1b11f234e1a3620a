"""Integration tests for the PostgreSQL directory and the session lock it
holds (DESIGN §7), against a real PostgreSQL: a cluster made by initdb in a
temporary directory, listening on a free loopback port, started once for
this module and stopped at its end. Each test gets a database of its own.

The servers are real `pillar serve` instances (harness.Pillar) whose config
says `directory = postgresql://...`; two of them with different host names
and ports share one database and one mail root, as several machines behind
a load balancer would.

Skipped when PostgreSQL's server programs are not installed (Debian
package `postgresql`).
"""

import json
import os
import poplib
import re
import signal
import smtplib
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness import (
    DOMAIN,
    IO_TIMEOUT,
    PASSWORD,
    USER,
    BOB,
    BOB_PASSWORD,
    Conn,
    PILLAR_BIN,
    free_port,
    set_key,
    wait_for,
)
from pgcluster import Cluster, pg_bindir


BINDIR = pg_bindir()
pytestmark = pytest.mark.skipif(BINDIR is None, reason="PostgreSQL server not installed")


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    yield c
    c.destroy()


@pytest.fixture
def db(cluster):
    """A fresh database's URL."""
    return cluster.url(cluster.new_database())


def pg_pillar(make_pillar, url, domain=True, start=True, **settings):
    """A Pillar instance whose directory is the PostgreSQL database at url
    (made by `pillar init --directory`)."""
    return make_pillar(init_args=("--directory", url), domain=domain, start=start, **settings)


def second_server(make_pillar, url, first, hostname="b.test", **settings):
    """Another server on other ports sharing first's database and mail root."""
    return make_pillar(init_args=("--directory", url, "--hostname", hostname), domain=False,
                       mail_root=str(first.mail_root), smtp=settings.pop("smtp", False),
                       **settings)


def advisory_locks(cluster, url):
    """Session-level advisory locks (bigint form) held in url's database."""
    dbname = url.rsplit("/", 1)[1]
    rows = cluster.psql("postgres",
                        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON l.database = d.oid"
                        f" WHERE l.locktype = 'advisory' AND l.objsubid = 1"
                        f" AND d.datname = '{dbname}'")
    return int(rows[0][0])


def pop3_login(port, user, password):
    """poplib session; returns (client, None) or (None, the -ERR reply)."""
    p = poplib.POP3("127.0.0.1", port, timeout=IO_TIMEOUT)
    try:
        p.user(user)
        p.pass_(password)
    except poplib.error_proto as e:
        try:
            p.close()
        except OSError:
            pass
        err = e.args[0]
        # poplib gives its own complaints (a dropped connection) as str.
        return None, err if isinstance(err, bytes) else err.encode()
    return p, None


def message(i, tag="m"):
    return (f"From: sender@example.org\r\nTo: {USER}\r\nSubject: {tag} {i}\r\n"
            f"Message-ID: <{tag}.{i}@example.org>\r\n\r\nbody {tag} {i}\r\n").encode()


def message_ids(inst, address):
    out = []
    for data in inst.stored_list(address):
        m = re.search(rb"^Message-ID: <([^>]+)>", data, re.M)
        assert m, data[:300]
        out.append(m.group(1).decode())
    return out


# --------------------------------------------------------------------------


def test_admin_commands_login_and_delivery(make_pillar, cluster, db):
    inst = pg_pillar(make_pillar, db, smtp=True)
    assert f"directory = {db}" in inst.conf.read_text()
    assert not (inst.dir / "directory.db").exists()
    inst.add_user(USER, PASSWORD)
    inst.add_user(BOB, BOB_PASSWORD)
    inst.cli("alias", "add", f"team@{DOMAIN}", USER, BOB)
    inst.cli("user", "quota", BOB, "--bytes", "10M")

    users = json.loads(inst.cli("user", "list", "--json").stdout_text)
    assert [u["address"] for u in users] == [USER, BOB] or \
        sorted(u["address"] for u in users) == sorted([USER, BOB])
    domains = json.loads(inst.cli("domain", "list", "--json").stdout_text)
    assert domains == [{"domain": DOMAIN, "mailboxes": 2}]
    assert "team@example.test" in inst.cli("alias", "list").stdout_text
    # The rows really are in PostgreSQL.
    rows = cluster.psql(db.rsplit("/", 1)[1], "SELECT address FROM mailboxes ORDER BY id")
    assert [r[0] for r in rows] == [USER, BOB]
    r = inst.cli("user", "add", USER, "--password-stdin", input="x\n", check=False)
    assert r.returncode != 0 and "already exists" in r.stderr_text

    s = inst.smtplib()
    s.sendmail("sender@example.org", [f"team@{DOMAIN}"], message(1))
    try:
        s.sendmail("sender@example.org", [f"nobody@{DOMAIN}"], message(2))
        raise AssertionError("an unknown recipient was accepted")
    except smtplib.SMTPRecipientsRefused as e:
        assert list(e.recipients.values())[0][0] == 550
    s.quit()
    inst.wait_stored(USER, 1)
    inst.wait_stored(BOB, 1)

    p, err = pop3_login(inst.port, USER, PASSWORD)
    assert err is None, err
    assert p.stat()[0] == 1
    assert b"Message-ID: <m.1@example.org>" in b"\r\n".join(p.retr(1)[1])
    p.quit()
    p, err = pop3_login(inst.port, USER, "wrong password")
    assert p is None and b"[AUTH]" in err, err

    # A login records the time in the directory.
    show = json.loads(inst.cli("user", "show", USER, "--json").stdout_text)
    assert show.get("last_login") not in (None, 0, "never"), show

    inst.cli("user", "lock", BOB)
    p, err = pop3_login(inst.port, BOB, BOB_PASSWORD)
    assert p is None and b"locked" in err, err
    inst.cli("user", "unlock", BOB)
    inst.cli("user", "rename", BOB, f"robert@{DOMAIN}")
    assert f"robert@{DOMAIN}" in inst.cli("alias", "list").stdout_text
    p, err = pop3_login(inst.port, f"robert@{DOMAIN}", BOB_PASSWORD)
    assert err is None, err
    p.quit()


def test_directory_migrate_creates_and_keeps_the_schema(make_pillar, cluster, db):
    inst = make_pillar(domain=False, start=False)
    set_key(inst.conf, "directory", db)
    r = inst.cli("domain", "list", check=False)
    assert r.returncode != 0 and "pillar directory migrate" in r.stderr_text, r.stderr_text
    for _ in range(2):
        r = inst.cli("directory", "migrate")
        assert "up to date" in r.stdout_text
    inst.add_domain()
    inst.cli("directory", "migrate")
    assert DOMAIN in inst.cli("domain", "list").stdout_text
    assert cluster.psql(db.rsplit("/", 1)[1], "SELECT version FROM schema_version") == [["3"]]


def test_two_servers_one_mailbox_second_gets_in_use(make_pillar, cluster, db):
    a = pg_pillar(make_pillar, db, hostname="a.test", smtp=True)
    a.add_user(USER, PASSWORD)
    b = second_server(make_pillar, db, a)
    assert a.port != b.port

    # Delivered through A, fetched through B: one store, one directory.
    s = a.smtplib()
    s.sendmail("sender@example.org", [USER], message(1))
    s.quit()
    a.wait_stored(USER, 1)

    p, err = pop3_login(b.port, USER, PASSWORD)
    assert err is None, err
    assert p.stat()[0] == 1
    assert advisory_locks(cluster, db) == 1
    q, err = pop3_login(a.port, USER, PASSWORD)
    assert q is None and b"[IN-USE]" in err, err
    p.quit()
    # Released with the session: A gets it now (bounded wait: the unlock
    # runs on B's pool just after the session ends).
    wait_for(lambda: advisory_locks(cluster, db) == 0, 10, "the advisory lock to go")
    c = a.wait_unlocked(USER, PASSWORD)
    c.ok("QUIT")


def test_the_lock_in_postgresql_alone_keeps_two_servers_apart(make_pillar, cluster, db):
    """Two servers with separate mail roots: only PostgreSQL knows that the
    mailbox is open (on machines with a shared store whose file locks do
    not reach across, this is the only lock there is)."""
    a = pg_pillar(make_pillar, db, hostname="a.test")
    a.add_user(USER, PASSWORD)
    b = make_pillar(init_args=("--directory", db, "--hostname", "b.test"), domain=False)
    assert a.mail_root != b.mail_root
    a.ensure_maildir(USER)
    b.ensure_maildir(USER)
    with a.session(USER, PASSWORD) as c:
        c.stat()
        with Conn(b.port) as d:
            d.ok("USER " + USER)
            reply = d.cmd("PASS " + PASSWORD)
            assert reply.startswith(b"-ERR [IN-USE]"), reply
        c.ok("QUIT")
    d = b.wait_unlocked(USER, PASSWORD)
    d.ok("QUIT")
    d.close()


def test_kill_9_of_the_server_holding_the_lock_frees_the_mailbox(make_pillar, cluster, db):
    a = pg_pillar(make_pillar, db, hostname="a.test")
    a.add_user(USER, PASSWORD)
    b = second_server(make_pillar, db, a)
    c = a.session(USER, PASSWORD)
    c.stat()
    with Conn(b.port) as d:
        d.ok("USER " + USER)
        assert d.cmd("PASS " + PASSWORD).startswith(b"-ERR [IN-USE]")
    # The whole server dies at once: master and workers, no goodbye.
    a.expect_exit = True
    os.killpg(a.proc.pid, signal.SIGKILL)
    a.proc.wait(10)
    c.close()
    wait_for(lambda: advisory_locks(cluster, db) == 0, 15,
             "PostgreSQL to release the dead server's lock")
    d = b.wait_unlocked(USER, PASSWORD, timeout=15)
    d.ok("QUIT")
    d.close()


def test_postgresql_down_gives_temporary_errors_only(make_pillar, cluster, db):
    inst = pg_pillar(make_pillar, db, smtp=True)
    inst.add_user(USER, PASSWORD)
    p, err = pop3_login(inst.port, USER, PASSWORD)
    assert err is None, err
    p.quit()
    cluster.stop()
    try:
        # POP3: a temporary failure, never "wrong password".
        with Conn(inst.port) as c:
            c.ok("USER " + USER)
            reply = c.cmd("PASS " + PASSWORD)
            assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
        # SMTP: 451 4.3.0 at RCPT, never 550.
        with inst.smtp() as s:
            s.ehlo()
            s.expect("MAIL FROM:<sender@example.org>", 250)
            r = s.cmd(f"RCPT TO:<{USER}>")
            assert r.code == 451 and r.enhanced == "4.3.0", r
    finally:
        cluster.start()
    # Back (pg_ctl start waited until it accepts connections): the very
    # next attempts work, on every worker and pool thread, without
    # restarting Pillar; connections that broke are noticed and made again.
    for i in range(8):
        p, err = pop3_login(inst.port, USER, PASSWORD)
        assert err is None, err
        p.quit()
        s = inst.smtplib()
        s.sendmail("sender@example.org", [USER], message(i))
        s.quit()
    inst.wait_stored(USER, 8)


def test_postgresql_restart_under_load_loses_nothing(make_pillar, cluster, db):
    a = pg_pillar(make_pillar, db, hostname="a.test", smtp=True)
    a.add_user(USER, PASSWORD)
    a.add_user(BOB, BOB_PASSWORD)
    b = second_server(make_pillar, db, a, smtp=True)
    accepted, temporary, problems = [], [], []
    stop = threading.Event()

    def sender(inst, tag):
        i = 0
        while not stop.is_set():
            i += 1
            try:
                with inst.smtp() as s:
                    s.ehlo()
                    s.expect("MAIL FROM:<sender@example.org>", 250)
                    r = s.cmd(f"RCPT TO:<{USER}>")
                    if r.code != 250:
                        (temporary if r.code == 451 else problems).append((tag, i, r))
                        continue
                    s.expect("DATA", 354)
                    s.send(message(i, tag) + b".\r\n")
                    r = s.reply()
                    if r.code == 250:
                        accepted.append(f"{tag}.{i}@example.org")
                    else:
                        (temporary if r.code // 100 == 4 else problems).append((tag, i, r))
            except Exception as e:  # a dropped connection is a problem too
                problems.append((tag, i, repr(e)))
            time.sleep(0.01)

    def popper(inst):
        while not stop.is_set():
            try:
                p, err = pop3_login(inst.port, BOB, BOB_PASSWORD)
                if p is None:
                    if b"[SYS/TEMP]" in err or b"[IN-USE]" in err:
                        temporary.append(("pop3", err))
                    else:
                        problems.append(("pop3", err))
                else:
                    p.stat()
                    p.quit()
            except Exception as e:
                problems.append(("pop3", repr(e)))
            time.sleep(0.02)

    threads = [threading.Thread(target=sender, args=(a, "a")),
               threading.Thread(target=sender, args=(b, "b")),
               threading.Thread(target=popper, args=(a,)),
               threading.Thread(target=popper, args=(b,))]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        cluster.restart()
        time.sleep(0.5)
        cluster.restart()
        time.sleep(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not problems, problems[:10]
    assert accepted, "nothing was delivered"
    # Every message acknowledged with 250 is there exactly once.
    a.wait_stored(USER, len(accepted))
    ids = message_ids(a, USER)
    assert sorted(ids) == sorted(accepted), (len(ids), len(accepted))
    # And the servers work normally afterwards, through either of them.
    for inst in (a, b):
        c = inst.wait_unlocked(USER, PASSWORD, timeout=20)
        assert c.stat()[0] == len(accepted)
        c.ok("QUIT")
        c.close()


def sqlite_rows(path, sql):
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_migrate_directory_from_sqlite_twice(make_pillar, cluster, db):
    inst = make_pillar(smtp=True, apop="yes")
    inst.add_domain("second.test")
    inst.add_user(USER, PASSWORD)
    inst.add_user(BOB, BOB_PASSWORD)
    inst.add_user("carol@second.test", "carol-Secret-3")
    inst.cli("user", "passwd", BOB, "--password-stdin", "--apop", input=BOB_PASSWORD + "\n")
    inst.cli("user", "quota", USER, "--bytes", "5M", "--messages", "100")
    inst.cli("user", "lock", "carol@second.test")
    inst.cli("alias", "add", f"team@{DOMAIN}", USER, BOB)
    inst.cli("alias", "add", "info@second.test", f"team@{DOMAIN}")
    p, err = pop3_login(inst.port, USER, PASSWORD)  # sets last_login
    assert err is None, err
    p.quit()
    inst.stop()

    def listing(directory):
        set_key(inst.conf, "directory", directory)
        out = {}
        for what in (("domain", "list"), ("user", "list"), ("alias", "list")):
            out[what] = json.loads(inst.cli(*what, "--json").stdout_text)
        out["show"] = [json.loads(inst.cli("user", "show", u, "--json").stdout_text)
                       for u in (USER, BOB, "carol@second.test")]
        return out

    before = listing("sqlite")
    dbname = db.rsplit("/", 1)[1]
    dump_sql = ("SELECT 'd', name, created::text, '', '' FROM domains UNION ALL"
                " SELECT 'm', address, password_hash, encode(coalesce(scram_stored_key, ''), 'hex'),"
                " concat_ws(',', quota_bytes, quota_messages, locked, created, last_login,"
                " apop_secret, scram_iterations, encode(scram_salt, 'hex'), id)"
                " FROM mailboxes UNION ALL"
                " SELECT 'a', address, target, id::text, '' FROM aliases UNION ALL"
                " SELECT 's', name, encode(value, 'hex'), '', '' FROM secrets ORDER BY 1, 2, 3")
    set_key(inst.conf, "directory", "sqlite")
    r = inst.cli("migrate-directory", "--from", "sqlite", "--to", db)
    assert "copied 2 domains, 3 mailboxes and 3 aliases" in r.stdout_text, r.stdout_text
    first = cluster.psql(dbname, dump_sql)
    r = inst.cli("migrate-directory", "--from", "sqlite", "--to", db)
    assert cluster.psql(dbname, dump_sql) == first, "a second run changed the copy"

    # The same rows, seen through the same commands.
    after = listing(db)
    assert after == before
    # The same secrets: the instance secret and the SCRAM keys.
    dbfile = str(inst.dir / "directory.db")
    secret = sqlite_rows(dbfile, "SELECT hex(value) FROM secrets WHERE name = 'instance'")[0][0]
    assert [r for r in first if r[0] == "s"] == [["s", "instance", secret.lower(), "", ""]]
    keys = dict(sqlite_rows(dbfile, "SELECT address, hex(scram_stored_key) FROM mailboxes"))
    for row in first:
        if row[0] == "m":
            assert row[3] == (keys[row[1]] or "").lower(), row[1]

    # And the server runs on the copy: logins, APOP, locks, aliases.
    set_key(inst.conf, "directory", db)
    inst.start()
    p, err = pop3_login(inst.port, USER, PASSWORD)
    assert err is None, err
    p.quit()
    p = poplib.POP3("127.0.0.1", inst.port, timeout=IO_TIMEOUT)
    p.apop(BOB, BOB_PASSWORD)
    p.quit()
    p, err = pop3_login(inst.port, "carol@second.test", "carol-Secret-3")
    assert p is None and b"locked" in err, err
    s = inst.smtplib()
    s.sendmail("sender@example.org", ["info@second.test"], message(1))
    s.quit()
    inst.wait_stored(USER, 1)
    inst.wait_stored(BOB, 1)


def test_migrate_directory_refuses_bad_arguments(make_pillar, db):
    inst = make_pillar(start=False)
    for args, what in (((), "both --from and --to"),
                       (("--from", "sqlite"), "both --from and --to"),
                       (("--from", "mysql", "--to", db), "--from must be"),
                       (("--from", "sqlite", "--to", "sqlite"), "--to must be")):
        r = inst.cli("migrate-directory", *args, check=False)
        assert r.returncode == 64 and what in r.stderr_text, (args, r.stderr_text)
    # Nothing reachable there: a clear error, exit 69.
    r = inst.cli("migrate-directory", "--from", "sqlite", "--to",
                 f"postgresql://pillar@127.0.0.1:{free_port()}/x", check=False)
    assert r.returncode == 69 and "cannot connect to PostgreSQL" in r.stderr_text, r.stderr_text


@pytest.mark.parametrize("unit", ["test_directory", "test_dir_secrets"])
def test_directory_unit_tests_pass_on_postgresql(cluster, unit):
    """The directory's unit tests (tests/unit/), run on a PostgreSQL
    database instead of SQLite: the same behaviour, error strings and all."""
    binary = Path(PILLAR_BIN).resolve().parent / "tests" / unit
    if not binary.exists():
        pytest.skip(f"{binary} not built (make unit)")
    r = subprocess.run([str(binary)], capture_output=True, timeout=300,
                       env={**os.environ, "PILLAR_TEST_DIRECTORY": cluster.url(cluster.new_database())})
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, out
    assert "PASSED" in out and "FAILED" not in out, out
