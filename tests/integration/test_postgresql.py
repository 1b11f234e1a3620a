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

import hashlib
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
    Closed,
    Conn,
    PILLAR_BIN,
    free_port,
    pop3_login,
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


def assert_unknown_refused(s):
    """An SMTP connection (smtplib) refuses an unknown local recipient."""
    try:
        s.sendmail("sender@example.org", [f"nobody@{DOMAIN}"], message(2))
        raise AssertionError("an unknown recipient was accepted")
    except smtplib.SMTPRecipientsRefused as e:
        assert list(e.recipients.values())[0][0] == 550


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
    assert_unknown_refused(s)
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


def test_mail_workers_can_use_a_role_that_cannot_read_the_secrets(make_pillar, cluster, db):
    """mail_directory: the mail workers connect as a role that may not read
    a password hash. Deliveries (to a mailbox, an alias, postmaster@), POP3
    logins and the session lock all work through it; the auth process and
    the admin commands still use `directory`."""
    dbname = db.rsplit("/", 1)[1]
    role = f"mail_{dbname}"  # roles belong to the whole cluster
    inst = pg_pillar(make_pillar, db, smtp=True, start=False)
    inst.add_user(USER, PASSWORD)
    inst.cli("alias", "add", f"team@{DOMAIN}", USER)
    cluster.psql(dbname, f"CREATE ROLE {role} LOGIN;"
                 f" GRANT SELECT ON domains, aliases, schema_version TO {role};"
                 f" GRANT SELECT (id, address, domain_id, quota_bytes, quota_messages, created)"
                 f" ON mailboxes TO {role}")
    mail_url = db.replace("postgresql://pillar@", f"postgresql://{role}@")
    r = subprocess.run(["psql", "-X", "-qAt", mail_url, "-c", "SELECT password_hash FROM mailboxes"],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and b"permission denied" in r.stderr, r
    set_key(inst.conf, "mail_directory", mail_url)
    inst.start()

    s = inst.smtplib()
    for rcpt in (USER, f"team@{DOMAIN}", f"postmaster@{DOMAIN}"):
        s.sendmail("sender@example.org", [rcpt], message(1, rcpt.split("@")[0]))
    assert_unknown_refused(s)
    s.quit()
    inst.wait_stored(USER, 3)

    p, err = pop3_login(inst.port, USER, PASSWORD)
    assert err is None, err
    assert p.stat()[0] == 3
    assert advisory_locks(cluster, db) == 1  # taken through the mail role
    users = {r[0] for r in cluster.psql(
        dbname, "SELECT usename FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'pillar'")}
    assert role in users and "pillar" in users, users
    p.quit()
    p, err = pop3_login(inst.port, USER, "wrong password")
    assert p is None and b"[AUTH]" in err, err
    assert "permission denied" not in inst.log()


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
    """Two servers deliver over SMTP and serve POP3 clients that fetch and
    delete, while PostgreSQL restarts twice. Every message acknowledged
    with 250 is stored exactly once; each is then either still there or was
    fetched by a session whose QUIT said +OK (its DELE done), never both,
    never neither, and no session's +OK QUIT ever returns a message again."""
    a = pg_pillar(make_pillar, db, hostname="a.test", smtp=True)
    a.add_user(USER, PASSWORD)
    a.add_user(BOB, BOB_PASSWORD)
    b = second_server(make_pillar, db, a, smtp=True)
    accepted = {USER: [], BOB: []}
    consumed, temporary, problems = [], [], []
    stop = threading.Event()

    def sender(inst, tag, rcpt):
        i = 0
        while not stop.is_set():
            i += 1
            try:
                with inst.smtp() as s:
                    s.ehlo()
                    s.expect("MAIL FROM:<sender@example.org>", 250)
                    r = s.cmd(f"RCPT TO:<{rcpt}>")
                    if r.code != 250:
                        (temporary if r.code == 451 else problems).append((tag, i, r))
                        continue
                    s.expect("DATA", 354)
                    s.send(message(i, tag) + b".\r\n")
                    r = s.reply()
                    if r.code == 250:
                        accepted[rcpt].append(f"{tag}.{i}@example.org")
                    else:
                        (temporary if r.code // 100 == 4 else problems).append((tag, i, r))
            except Exception as e:  # a dropped connection is a problem too
                problems.append((tag, i, repr(e)))
            time.sleep(0.01)

    def popper(inst):
        """Fetch and delete all of bob's mail; what a +OK QUIT removed."""
        while not stop.is_set():
            try:
                p, err = pop3_login(inst.port, BOB, BOB_PASSWORD)
                if p is None:
                    if b"[SYS/TEMP]" in err or b"[IN-USE]" in err:
                        temporary.append(("pop3", err))
                    else:
                        problems.append(("pop3", err))
                    time.sleep(0.02)
                    continue
                got = []
                for n in range(1, p.stat()[0] + 1):
                    lines = p.retr(n)[1]
                    ids = [l for l in lines if l.startswith(b"Message-ID: <")]
                    got.append(ids[0][13:-1].decode())
                    p.dele(n)
                try:
                    p.quit()
                    consumed.extend(got)
                except poplib.error_proto as e:  # -ERR [SYS/TEMP]: kept
                    assert b"[SYS/TEMP]" in e.args[0], e
                    temporary.append(("pop3 quit", e.args[0]))
            except Exception as e:
                problems.append(("pop3", repr(e)))
            time.sleep(0.02)

    threads = [threading.Thread(target=sender, args=(a, "a", USER)),
               threading.Thread(target=sender, args=(b, "b", USER)),
               threading.Thread(target=sender, args=(a, "ab", BOB)),
               threading.Thread(target=sender, args=(b, "bb", BOB)),
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
    assert accepted[USER] and accepted[BOB], "nothing was delivered"
    # Every message acknowledged with 250 is there exactly once.
    a.wait_stored(USER, len(accepted[USER]))
    ids = message_ids(a, USER)
    assert sorted(ids) == sorted(accepted[USER]), (len(ids), len(accepted[USER]))
    # bob's: fetched and deleted, or still there; exactly one of the two.
    assert consumed, "no POP3 session deleted anything"
    assert len(consumed) == len(set(consumed)), "a deleted message came back"
    left = message_ids(a, BOB)
    assert sorted(consumed + left) == sorted(accepted[BOB]), \
        (len(consumed), len(left), len(accepted[BOB]))
    # And the servers work normally afterwards, through either of them.
    for inst in (a, b):
        c = inst.wait_unlocked(USER, PASSWORD, timeout=20)
        assert c.stat()[0] == len(accepted[USER])
        c.ok("QUIT")
        c.close()


EX_TEMPFAIL = 75


def mailbox_lock_key(address):
    """The key of a mailbox's session lock in PostgreSQL, derived as the
    server derives it (src/directory/lock.c): the first 8 bytes of SHA-256
    of the address, as a big-endian signed bigint."""
    return int.from_bytes(hashlib.sha256(address.encode()).digest()[:8], "big", signed=True)


def lock_holders(cluster, url, address):
    """How many connections hold the session lock of address in url's
    database (a bigint advisory lock shows as classid = high 32 bits,
    objid = low 32 bits, objsubid = 1)."""
    key = mailbox_lock_key(address) & 0xFFFFFFFFFFFFFFFF
    dbname = url.rsplit("/", 1)[1]
    rows = cluster.psql("postgres",
                        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON l.database = d.oid"
                        " WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted"
                        f" AND l.classid = {key >> 32} AND l.objid = {key & 0xFFFFFFFF}"
                        f" AND d.datname = '{dbname}'")
    return int(rows[0][0])


class ForeignLock:
    """A POP3 session on another server, as far as PostgreSQL can tell: a
    psql connection of its own holding the mailbox's session lock until
    release()."""

    def __init__(self, cluster, url, address):
        self.cluster, self.url, self.address = cluster, url, address
        self.proc = subprocess.Popen(["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", url],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.proc.stdin.write(
            f"SELECT pg_try_advisory_lock({mailbox_lock_key(address)});\n".encode())
        self.proc.stdin.flush()
        wait_for(lambda: lock_holders(cluster, url, address) == 1, 10,
                 f"psql to take the session lock of {address}")

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.write(
                f"SELECT pg_advisory_unlock({mailbox_lock_key(self.address)});\n".encode())
            self.proc.stdin.close()
            self.proc.wait(10)
        wait_for(lambda: lock_holders(self.cluster, self.url, self.address) == 0, 10,
                 f"the session lock of {self.address} to go")


def session_on_messages(make_pillar, db, n):
    """A server on db with n messages for alice, and a session on them."""
    a = pg_pillar(make_pillar, db, hostname="a.test")
    a.add_user(USER, PASSWORD)
    for i in range(n):
        a.deliver(USER, message(i))
    return a, a.session(USER, PASSWORD)


def test_open_session_takes_its_lock_again_after_a_postgresql_restart(make_pillar, cluster, db):
    """A restart of PostgreSQL ends the connection holding the session
    locks; the server takes them again as soon as PostgreSQL is back,
    without waiting for a command, and the session goes on."""
    a, c = session_on_messages(make_pillar, db, 2)
    c.ok("DELE 1")
    assert lock_holders(cluster, db, USER) == 1
    cluster.restart()
    wait_for(lambda: lock_holders(cluster, db, USER) == 1, 10,
             "the session lock to be taken again")
    # Anyone else is kept out again, as before the restart.
    other = subprocess.run(["psql", "-X", "-qAt", db, "-c",
                            f"SELECT pg_try_advisory_lock({mailbox_lock_key(USER)})"],
                           capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert other.stdout.strip() == b"f", other
    assert c.cmd("QUIT").startswith(b"+OK"), "QUIT after the restart"
    c.close()
    wait_for(lambda: len(a.stored_list(USER)) == 1, 10, "the DELE'd message to go")
    wait_for(lambda: lock_holders(cluster, db, USER) == 0, 10, "the session lock to go")


@pytest.mark.parametrize("next_command", ["QUIT at once", "NOOP later"])
def test_session_whose_lock_another_server_took_ends_without_changes(
        make_pillar, cluster, db, next_command):
    """While PostgreSQL restarts, another server may take a mailbox whose
    lock went with the old connection. The session that held it must not
    touch the mailbox any more: its next command (QUIT too) gets -ERR
    [SYS/TEMP], nothing is deleted. The server is stopped (SIGSTOP) across
    the restart so that the other side surely wins."""
    a, c = session_on_messages(make_pillar, db, 3)
    c.ok("DELE 1")
    c.ok("DELE 2")
    os.killpg(a.proc.pid, signal.SIGSTOP)
    try:
        cluster.restart()
        other = ForeignLock(cluster, db, USER)
    finally:
        os.killpg(a.proc.pid, signal.SIGCONT)
    try:
        if next_command == "NOOP later":
            # Its watcher looks every second, so by now it has found the
            # lock taken: the next command is refused, whatever it is.
            time.sleep(3)
            reply = c.cmd("NOOP")
            assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
            assert b"lock" in reply, reply
            with pytest.raises(Closed):
                c.cmd("QUIT")
            assert "reason=lock-lost" in a.log()
        else:
            reply = c.cmd("QUIT")
            assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
        c.close()
        assert len(a.stored_list(USER)) == 3, "a message was deleted"
        assert lock_holders(cluster, db, USER) == 1  # the other's, still
    finally:
        other.release()
    d = a.wait_unlocked(USER, PASSWORD)
    assert d.stat()[0] == 3
    d.ok("QUIT")
    d.close()


def user_addresses(inst):
    return sorted(u["address"] for u in json.loads(inst.cli("user", "list", "--json").stdout_text))


def assert_refused(r, address, what):
    assert r.returncode == EX_TEMPFAIL, (r.returncode, r.stdout_text, r.stderr_text)
    assert f"cannot {what}" in r.stderr_text and address in r.stderr_text, r.stderr_text
    assert "a POP3 session has" in r.stderr_text and "another server" in r.stderr_text, \
        r.stderr_text
    assert r.stderr_text.count("\n") == 1, r.stderr_text


def test_user_del_and_rename_refuse_while_another_server_holds_the_mailbox(
        make_pillar, cluster, db):
    inst = pg_pillar(make_pillar, db, smtp=True)
    inst.add_user(USER, PASSWORD)
    inst.add_user(BOB, BOB_PASSWORD)
    inst.cli("alias", "add", f"team@{DOMAIN}", BOB)
    s = inst.smtplib()
    s.sendmail("sender@example.org", [BOB], message(1))
    s.quit()
    inst.wait_stored(BOB, 1)

    # The key computed here is the one the server takes for a session.
    with inst.session(BOB, BOB_PASSWORD) as c:
        c.stat()
        assert lock_holders(cluster, db, BOB) == 1
        assert lock_holders(cluster, db, USER) == 0
        c.ok("QUIT")
    wait_for(lambda: lock_holders(cluster, db, BOB) == 0, 10, "the session's lock to go")

    maildir = inst.maildir(BOB)
    files = sorted(str(f.relative_to(maildir)) for f in maildir.rglob("*"))
    held = ForeignLock(cluster, db, BOB)
    try:
        for args, what in ((("user", "del", BOB), "delete"),
                           (("user", "del", BOB, "--purge"), "delete"),
                           (("user", "rename", BOB, f"robert@{DOMAIN}"), "rename")):
            r = inst.cli(*args, check=False)
            assert_refused(r, BOB, what)
            # Nothing changed: the rows, the alias, the Maildir, no copy kept.
            assert user_addresses(inst) == sorted([USER, BOB])
            assert f"team@{DOMAIN}" in inst.cli("alias", "list").stdout_text
            assert sorted(str(f.relative_to(maildir)) for f in maildir.rglob("*")) == files
            assert not inst.maildir(f"robert@{DOMAIN}").exists()
            assert not (inst.dir / "deleted").exists() or not any((inst.dir / "deleted").iterdir())
        # --kick ends this server's sessions only; the other server's stays,
        # and the command still refuses (after waiting for it a little).
        r = inst.cli("user", "del", BOB, "--kick", check=False)
        assert r.returncode == EX_TEMPFAIL, (r.returncode, r.stderr_text)
        assert "another server" in r.stderr_text and BOB in r.stderr_text, r.stderr_text
        assert user_addresses(inst) == sorted([USER, BOB])
        # The refusals took nothing from the other holder, and kept nothing.
        assert lock_holders(cluster, db, BOB) == 1
        # Another mailbox is not held: it can go meanwhile.
        r = inst.cli("user", "rename", USER, f"alice2@{DOMAIN}")
        assert "renamed" in r.stdout_text
    finally:
        held.release()

    r = inst.cli("user", "rename", BOB, f"robert@{DOMAIN}")
    assert "renamed" in r.stdout_text, r.stdout_text
    assert not maildir.exists() and inst.maildir(f"robert@{DOMAIN}").is_dir()
    assert user_addresses(inst) == sorted([f"alice2@{DOMAIN}", f"robert@{DOMAIN}"])
    r = inst.cli("user", "del", f"robert@{DOMAIN}", "--purge")
    assert "mail removed" in r.stdout_text, r.stdout_text
    assert user_addresses(inst) == [f"alice2@{DOMAIN}"]
    # The commands let go of the locks they took.
    assert advisory_locks(cluster, db) == 0


def test_domain_del_force_refuses_while_a_session_on_another_server_has_a_mailbox(
        make_pillar, cluster, db):
    """A real POP3 session on a second server with a mail root of its own:
    only PostgreSQL knows that the mailbox is open."""
    a = pg_pillar(make_pillar, db, hostname="a.test")
    a.add_user(USER, PASSWORD)
    a.add_user(BOB, BOB_PASSWORD)
    b = make_pillar(init_args=("--directory", db, "--hostname", "b.test"), domain=False)
    assert a.mail_root != b.mail_root
    b.ensure_maildir(BOB)

    # BOB sorts after USER: a check that missed BOB's session would have
    # deleted USER before finding out.
    c = b.session(BOB, BOB_PASSWORD)
    try:
        c.stat()
        r = a.cli("domain", "del", DOMAIN, "--force", check=False)
        assert r.returncode == EX_TEMPFAIL, (r.returncode, r.stdout_text, r.stderr_text)
        assert f"cannot delete domain {DOMAIN}" in r.stderr_text, r.stderr_text
        assert BOB in r.stderr_text and "another server" in r.stderr_text, r.stderr_text
        assert user_addresses(a) == sorted([USER, BOB])
        assert a.maildir(USER).is_dir() and a.maildir(BOB).is_dir()
        assert DOMAIN in a.cli("domain", "list").stdout_text
        # --kick ends sessions on this server only: refused all the same,
        # before USER's mailbox is touched.
        r = a.cli("domain", "del", DOMAIN, "--force", "--kick", check=False)
        assert r.returncode == EX_TEMPFAIL, (r.returncode, r.stdout_text, r.stderr_text)
        assert BOB in r.stderr_text and "another server" in r.stderr_text, r.stderr_text
        assert user_addresses(a) == sorted([USER, BOB])
        assert a.maildir(USER).is_dir()
        r = a.cli("user", "del", BOB, check=False)
        assert_refused(r, BOB, "delete")
        assert user_addresses(a) == sorted([USER, BOB])
        c.ok("STAT")  # the session is untouched
        c.ok("QUIT")
    finally:
        c.close()

    wait_for(lambda: advisory_locks(cluster, db) == 0, 10, "b's session lock to go")
    r = a.cli("domain", "del", DOMAIN, "--force")
    assert f"domain {DOMAIN} deleted" in r.stdout_text, r.stdout_text
    assert user_addresses(a) == []
    assert advisory_locks(cluster, db) == 0


def test_user_rename_and_del_kick_a_session_of_this_server(make_pillar, cluster, db):
    """A session here holds both locks, the Maildir's and PostgreSQL's, and
    lets go of the second just after the first: --kick waits for both."""
    inst = pg_pillar(make_pillar, db)
    inst.add_user(USER, PASSWORD)
    new = f"alice2@{DOMAIN}"
    for args, done in ((("user", "rename", USER, new), "renamed"),
                       (("user", "del", new), "deleted")):
        address = args[2]
        c = inst.session(address, PASSWORD)
        try:
            c.stat()
            assert lock_holders(cluster, db, address) == 1
            r = inst.cli(*args, check=False)
            assert r.returncode == EX_TEMPFAIL, (r.returncode, r.stderr_text)
            assert "'pillar kick" in r.stderr_text and "another server" not in r.stderr_text, \
                r.stderr_text
            r = inst.cli(*args, "--kick")
            assert f"1 session of {address} ended" in r.stdout_text, r.stdout_text
            assert done in r.stdout_text, r.stdout_text
            with pytest.raises(Closed):
                c.cmd("STAT")
        finally:
            c.close()
    assert user_addresses(inst) == []
    assert advisory_locks(cluster, db) == 0


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
    dbfile = str(inst.dir / "auth" / "secrets.db")
    secret = sqlite_rows(dbfile, "SELECT hex(value) FROM secrets WHERE name = 'instance'")[0][0]
    assert [r for r in first if r[0] == "s"] == [["s", "instance", secret.lower(), "", ""]]
    keys = dict(sqlite_rows(dbfile, "SELECT address, hex(scram_stored_key) FROM credentials"))
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
