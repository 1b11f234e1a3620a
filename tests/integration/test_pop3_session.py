"""Session life: the mailbox lock, UPDATE semantics, pipelining, timeouts,
failed logins, shutdown, reload, worker restarts, logs."""

import os
import re
import signal
import socket
import time

import pytest

from harness import (
    PASSWORD,
    USER,
    Closed,
    Conn,
    is_root,
    retr_wire,
    simple_message,
    vsize,
    wait_for,
)

BOB = "bob@example.test"
BOB_PASSWORD = "bob-Secret-2"


# -- the exclusive mailbox lock ---------------------------------------------


def test_second_login_gets_in_use(mailbox):
    p, _ = mailbox
    first = p.session(USER, PASSWORD)
    with p.conn() as second:
        second.ok("USER " + USER)
        reply = second.cmd("PASS " + PASSWORD)
        assert reply.startswith(b"-ERR [IN-USE]"), reply
    # The first session is unaffected.
    assert first.stat()[0] == 3
    first.ok("QUIT")
    first.close()
    # Released by QUIT.
    c = p.wait_unlocked(USER, PASSWORD)
    c.ok("QUIT")
    c.close()


def test_lock_is_per_mailbox(mailbox):
    p, _ = mailbox
    p.add_user(BOB, BOB_PASSWORD)
    with p.session(USER, PASSWORD) as a, p.session(BOB, BOB_PASSWORD) as b:
        assert a.stat()[0] == 3
        assert b.stat()[0] == 0
        a.ok("QUIT")
        b.ok("QUIT")


def test_dropped_connection_releases_lock_and_deletes_nothing(mailbox):
    p, msgs = mailbox
    c = p.session(USER, PASSWORD)
    c.ok("DELE 1")
    c.ok("DELE 2")
    c.close()  # no QUIT
    c = p.wait_unlocked(USER, PASSWORD)
    assert c.stat() == (3, sum(vsize(d) for _, d in msgs))
    c.ok("QUIT")
    c.close()
    assert p.uniques_on_disk(USER) == sorted(u for u, _ in msgs)


def test_poplib_drop_without_quit(mailbox):
    import poplib

    p, msgs = mailbox
    pop = poplib.POP3("127.0.0.1", p.port, timeout=15)
    pop.user(USER)
    pop.pass_(PASSWORD)
    pop.dele(1)
    pop.close()  # closes the socket without QUIT
    c = p.wait_unlocked(USER, PASSWORD)
    assert c.stat()[0] == 3
    c.ok("QUIT")
    c.close()
    assert p.uniques_on_disk(USER) == sorted(u for u, _ in msgs)


def test_killed_worker_releases_lock_and_is_restarted(mailbox):
    p, msgs = mailbox
    before = p.workers()
    assert before, "no worker processes under the master"
    c = p.session(USER, PASSWORD)
    c.ok("DELE 1")
    victim = p.holder_of(c)
    os.kill(victim, signal.SIGKILL)
    # The session is gone with its worker.
    assert c.read_to_eof() == b""
    c.close()
    # The lock went with it; nothing was deleted.
    c = p.wait_unlocked(USER, PASSWORD)
    assert c.stat()[0] == 3
    c.ok("QUIT")
    c.close()
    assert p.uniques_on_disk(USER) == sorted(u for u, _ in msgs)
    # The master replaced the worker.
    wait_for(lambda: victim not in p.workers() and len(p.workers()) == len(before),
             10, "the master to restart the killed worker")
    assert p.proc.poll() is None


def test_killed_idle_worker_is_restarted_and_service_continues(mailbox):
    p, _ = mailbox
    before = p.workers()
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in p.workers() and len(p.workers()) == len(before),
             10, "the master to restart the killed worker")
    # Several connections, so every worker gets to serve one.
    for _ in range(2 * len(before)):
        c = p.wait_unlocked(USER, PASSWORD)
        assert c.stat()[0] == 3
        c.ok("QUIT")
        c.close()


# -- UPDATE state -------------------------------------------------------------


def test_deletions_happen_only_at_quit(mailbox):
    p, msgs = mailbox
    with p.session(USER, PASSWORD) as c:
        c.ok("DELE 1")
        c.ok("DELE 3")
        assert p.uniques_on_disk(USER) == sorted(u for u, _ in msgs), "deleted before QUIT"
        c.ok("QUIT")
        assert c.read_to_eof() == b""
    # The +OK to QUIT means the files are gone.
    assert p.uniques_on_disk(USER) == [msgs[1][0]]


def test_rset_undoes_dele(mailbox):
    p, msgs = mailbox
    with p.session(USER, PASSWORD) as c:
        c.ok("DELE 1")
        c.ok("DELE 2")
        c.err("RETR 1")
        c.ok("RSET")
        assert c.stat() == (3, sum(vsize(d) for _, d in msgs))
        assert [n for n, _ in c.list()] == [1, 2, 3]
        c.ok("RETR 1")
        c.multiline()
        c.ok("DELE 2")
        c.ok("QUIT")
    assert p.uniques_on_disk(USER) == sorted([msgs[0][0], msgs[2][0]])


def test_quit_with_no_deletions_keeps_everything(mailbox):
    p, msgs = mailbox
    with p.session(USER, PASSWORD) as c:
        for i in range(1, 4):
            c.ok(f"RETR {i}")
            c.multiline()
        c.ok("QUIT")
    assert p.uniques_on_disk(USER) == sorted(u for u, _ in msgs)


def test_failed_unlink_at_quit_reports_sys_temp(mailbox):
    p, msgs = mailbox
    md = p.maildir(USER)
    c = p.session(USER, PASSWORD)
    try:
        c.ok("DELE 2")
        # The server (not root after dropping privileges) can no longer unlink.
        os.chmod(md / "new", 0o555)
        os.chmod(md / "cur", 0o555)
        reply = c.cmd("QUIT")
        assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
    finally:
        os.chmod(md / "new", 0o700)
        os.chmod(md / "cur", 0o700)
        c.close()
    assert p.uniques_on_disk(USER) == sorted(u for u, _ in msgs)
    c = p.wait_unlocked(USER, PASSWORD)
    assert [u for _, u in c.uidls()] == [u for u, _ in msgs]
    c.ok("QUIT")
    c.close()


def test_mail_delivered_during_a_session_shows_only_in_later_sessions(mailbox):
    p, msgs = mailbox
    with p.session(USER, PASSWORD) as c:
        before = c.stat()
        new_unique = p.deliver(USER, simple_message(9))
        p.deliver(USER, simple_message(10), sizes=False, subdir="cur")
        assert c.stat() == before
        assert len(c.list()) == 3
        assert [u for _, u in c.uidls()] == [u for u, _ in msgs]
        c.err("RETR 4")
        c.err("LIST 4")
        c.ok("QUIT")
    c = p.wait_unlocked(USER, PASSWORD)
    uids = [u for _, u in c.uidls()]
    assert len(uids) == 5 and new_unique in uids
    c.ok("QUIT")
    c.close()


def test_uidl_stable_across_sessions_restart_and_reload(alice):
    expected = [
        alice.deliver(USER, simple_message(1)),
        alice.deliver(USER, simple_message(2), sizes=False),
        alice.deliver(USER, simple_message(3), subdir="cur"),
        alice.deliver(USER, simple_message(4), sizes=False, subdir="cur"),
    ]

    def uidls():
        c = alice.wait_unlocked(USER, PASSWORD)
        out = [u for _, u in c.uidls()]
        c.ok("QUIT")
        c.close()
        return out

    assert uidls() == expected
    assert uidls() == expected
    alice.restart()
    assert uidls() == expected
    alice.signal(signal.SIGHUP)
    assert uidls() == expected
    assert alice.proc.poll() is None


# -- pipelining ---------------------------------------------------------------


def test_pipelined_transaction_commands(mailbox):
    p, msgs = mailbox
    data = msgs[0][1]
    with p.session(USER, PASSWORD) as c:
        c.send("STAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\nTOP 1 0\r\nNOPE\r\nDELE 3\r\n"
               "LIST 3\r\nNOOP\r\nRSET\r\nSTAT\r\n")
        assert c.line() == f"+OK 3 {sum(vsize(d) for _, d in msgs)}".encode()
        assert c.line().startswith(b"+OK")
        assert len(c.multiline()) == 3
        assert c.line() == f"+OK 2 {msgs[1][0]}".encode()
        assert c.line().startswith(b"+OK")
        assert c.multiline_raw() == retr_wire(data)
        assert c.line().startswith(b"+OK")
        c.multiline()
        assert c.line().startswith(b"-ERR")  # NOPE
        assert c.line().startswith(b"+OK")  # DELE 3
        assert c.line().startswith(b"-ERR")  # LIST 3, deleted
        assert c.line().startswith(b"+OK")  # NOOP
        assert c.line().startswith(b"+OK")  # RSET
        assert c.line().startswith(b"+OK 3 ")
        c.ok("QUIT")


def test_pipelined_login(mailbox):
    p, _ = mailbox
    with p.conn() as c:
        c.send(f"USER {USER}\r\nPASS {PASSWORD}\r\nSTAT\r\nQUIT\r\n")
        assert c.line().startswith(b"+OK")
        assert c.line().startswith(b"+OK")
        assert c.line().startswith(b"+OK 3 ")
        assert c.line().startswith(b"+OK")
        assert c.read_to_eof() == b""


def test_pipelined_failed_then_good_login(mailbox):
    p, _ = mailbox
    with p.conn() as c:
        c.send(f"USER {USER}\r\nPASS wrong-one\r\nSTAT\r\nUSER {USER}\r\nPASS {PASSWORD}\r\nSTAT\r\n")
        assert c.line().startswith(b"+OK")
        assert c.line().startswith(b"-ERR")
        assert c.line().startswith(b"-ERR")  # STAT before login
        assert c.line().startswith(b"+OK")
        assert c.line().startswith(b"+OK")
        assert c.line().startswith(b"+OK 3 ")
        c.ok("QUIT")


def test_many_pipelined_commands_in_one_write(mailbox):
    p, _ = mailbox
    with p.session(USER, PASSWORD) as c:
        n = 2000
        c.send(b"NOOP\r\nSTAT\r\n" * n)
        for i in range(n):
            assert c.line().startswith(b"+OK"), i
            assert c.line().startswith(b"+OK 3 "), i
        c.ok("QUIT")


def test_pipelined_large_retrs_are_all_answered_in_order(alice):
    # Far more output than socket buffers hold, requested in one write: the
    # server has to stop and resume without losing or reordering replies.
    big = [(b"Subject: big %d\n\n" % i) + (b"%d line of text ..........\n" % i) * 20000
           for i in range(3)]
    for data in big:
        alice.deliver(USER, data)
    with alice.session(USER, PASSWORD) as c:
        order = [1, 2, 3, 2, 1, 3, 3, 1, 2, 1]
        c.send("".join(f"RETR {i}\r\n" for i in order) + "NOOP\r\n")
        for i in order:
            assert c.line().startswith(b"+OK")
            assert c.multiline_raw(timeout=30) == retr_wire(big[i - 1]), f"RETR {i}"
        assert c.line().startswith(b"+OK")
        c.ok("QUIT")


def test_command_trickled_one_byte_at_a_time(mailbox):
    p, _ = mailbox
    with p.conn() as c:
        for b in f"USER {USER}\r\nPASS {PASSWORD}\r\nSTAT\r\n".encode():
            c.send(bytes([b]))
            time.sleep(0.002)
        assert c.line().startswith(b"+OK")
        assert c.line().startswith(b"+OK")
        assert c.line().startswith(b"+OK 3 ")
        c.ok("QUIT")


# -- failed logins ----------------------------------------------------------


def test_unknown_user_and_wrong_password_get_the_same_reply(alice):
    with alice.conn() as c:
        known = c.ok("USER " + USER)
        wrong_pw = c.err("PASS not-the-password")
    with alice.conn() as c:
        unknown = c.ok("USER nobody@example.test")
        no_user = c.err("PASS not-the-password")
    with alice.conn() as c:
        c.ok("USER someone@unknown-domain.test")
        no_domain = c.err("PASS not-the-password")
    assert wrong_pw == no_user == no_domain
    assert known.replace(USER.encode(), b"X") == unknown.replace(b"nobody@example.test", b"X")
    c = alice.wait_unlocked(USER, PASSWORD)
    c.ok("QUIT")
    c.close()


def test_failed_login_answered_after_auth_failure_delay(alice):
    # auth_failure_delay = 300ms in every test instance.
    with alice.conn() as c:
        c.ok("USER " + USER)
        start = time.monotonic()
        c.err("PASS wrong")
        assert time.monotonic() - start >= 0.28
    with alice.conn() as c:
        c.ok("USER nobody@example.test")
        start = time.monotonic()
        c.err("PASS wrong")
        assert time.monotonic() - start >= 0.28


def test_failed_login_delay_does_not_block_other_sessions(make_pillar):
    # One worker, so both clients share one event loop; a long failure delay.
    # The good client comes from another address, so a per-address penalty
    # for the failing one does not apply to it.
    p = make_pillar(workers=1, auth_failure_delay="3s")
    p.add_user(USER, PASSWORD)
    p.deliver(USER, simple_message(1))
    with p.conn() as slow, p.conn(source="127.0.0.2") as fast:
        slow.ok("USER " + USER)
        slow.send("PASS wrong\r\n")
        time.sleep(0.2)  # let the server start the delay
        fast.ok("USER " + USER)
        assert fast.cmd("PASS " + PASSWORD).startswith(b"+OK")
        assert fast.stat()[0] == 1
        fast.ok("QUIT")
        # The good login was completed while the failed one is still waiting.
        assert not slow.pending(0), "failed login answered before the other login completed"
        assert slow.line().startswith(b"-ERR")


def test_three_failed_logins_end_the_connection(alice):
    with alice.conn() as c:
        for attempt in range(2):
            c.ok("USER " + USER)
            c.err("PASS wrong-%d" % attempt)
        c.ok("USER " + USER)
        c.err("PASS wrong-3")
        assert c.read_to_eof() == b""
    c = alice.wait_unlocked(USER, PASSWORD)
    c.ok("QUIT")
    c.close()


def test_in_use_reply_does_not_leak_for_wrong_password(mailbox):
    # A wrong password for a mailbox that is in use must still be a plain
    # authentication failure, not [IN-USE].
    p, _ = mailbox
    with p.session(USER, PASSWORD) as a, p.conn() as b:
        b.ok("USER " + USER)
        reply = b.err("PASS wrong")
        assert b"IN-USE" not in reply
        a.ok("QUIT")


# -- timeouts -----------------------------------------------------------------


def test_login_timeout_disconnects_idle_client(alice):
    start = time.monotonic()
    with alice.conn() as c:
        line = c.line(timeout=15)
        elapsed = time.monotonic() - start
        assert line.startswith(b"-ERR"), line
        assert c.read_to_eof() == b""
    assert 2.5 <= elapsed <= 13, elapsed  # login_timeout = 3s
    c = alice.wait_unlocked(USER, PASSWORD)
    c.ok("QUIT")
    c.close()


def test_login_timeout_is_not_extended_by_activity(alice):
    start = time.monotonic()
    c = alice.conn()
    closed = False
    try:
        while time.monotonic() - start < 15:
            try:
                c.send("CAPA\r\n")
                reply = c.line()
            except (Closed, BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if reply.startswith(b"+OK"):
                c.multiline()
            time.sleep(0.3)
    finally:
        c.close()
    assert closed, "an unauthenticated client kept the connection for 15s (login_timeout = 3s)"
    assert time.monotonic() - start >= 2.5
    c = alice.wait_unlocked(USER, PASSWORD)
    c.ok("QUIT")
    c.close()


def test_login_timeout_does_not_apply_after_login(mailbox):
    p, _ = mailbox
    with p.session(USER, PASSWORD) as c:
        time.sleep(4.5)  # past login_timeout = 3s
        c.ok("NOOP")
        assert c.stat()[0] == 3
        c.ok("QUIT")


def test_idle_timeout_below_ten_minutes_is_refused(make_pillar):
    p = make_pillar(start=False)
    p.configure(pop3_idle_timeout="5m")
    r = p.cli("check", check=False)
    assert r.returncode != 0
    assert "pop3_idle_timeout" in r.stderr_text


# -- shutdown and reload ------------------------------------------------------


def test_sigterm_tells_sessions_and_deletes_nothing(mailbox):
    p, msgs = mailbox
    trans = p.session(USER, PASSWORD)
    trans.ok("DELE 1")
    trans.ok("DELE 2")
    auth = p.conn()
    rc = p.stop()
    assert rc == 0
    for c in (trans, auth):
        line = c.line()
        assert line.startswith(b"-ERR [SYS/TEMP]"), line
        assert c.read_to_eof() == b""
        c.close()
    assert p.uniques_on_disk(USER) == sorted(u for u, _ in msgs)
    # Nothing listens any more.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", p.port), timeout=2).close()
    p.start()
    c = p.wait_unlocked(USER, PASSWORD)
    assert [u for _, u in c.uidls()] == [u for u, _ in msgs]
    c.ok("QUIT")
    c.close()


def test_sighup_reloads_config_and_keeps_sessions(mailbox):
    p, msgs = mailbox
    p.stop()
    p.configure(login_timeout="60s")
    p.start()
    session = p.session(USER, PASSWORD)
    session.ok("DELE 3")
    master = p.pid
    p.configure(login_timeout="1s")
    p.signal(signal.SIGHUP)

    # The new login_timeout applies to new connections once the reload is
    # done: poll with fresh connections until one is cut off early.
    deadline = time.monotonic() + 20
    applied = False
    while time.monotonic() < deadline and not applied:
        with p.conn() as c:
            try:
                line = c.line(timeout=4)
                applied = line.startswith(b"-ERR")
            except TimeoutError:
                pass
    assert applied, "login_timeout = 1s not applied after SIGHUP"
    assert p.pid == master and p.proc.poll() is None

    # The session opened before the reload goes on and its deletion applies.
    session.ok("NOOP")
    assert session.stat()[0] == 2
    session.ok("QUIT")
    session.close()
    assert p.uniques_on_disk(USER) == sorted(u for u, _ in msgs[:2])


# -- processes ----------------------------------------------------------------


@pytest.mark.skipif(not is_root(), reason="privilege drop happens only when started as root")
def test_mail_workers_run_as_run_as_account(pillar):
    import pwd

    account = pillar.conf_value("run_as") or "pillar"
    pw = pwd.getpwnam(account)
    workers = pillar.workers("mail")
    assert workers
    for pid in workers:
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        assert status["Uid"].split() == [str(pw.pw_uid)] * 4, (pid, status["Uid"])
        assert status["Gid"].split() == [str(pw.pw_gid)] * 4, (pid, status["Gid"])
        assert "0" not in status.get("Groups", "").split(), (pid, status.get("Groups"))


@pytest.mark.skipif(not is_root(), reason="ownership only matters when started as root")
def test_state_owned_by_run_as_account(pillar):
    import pwd

    account = pillar.conf_value("run_as") or "pillar"
    uid = pwd.getpwnam(account).pw_uid
    assert os.stat(pillar.dir / "directory.db").st_uid == uid
    assert os.stat(pillar.mail_root).st_uid == uid


def test_max_connections_per_ip(make_pillar):
    p = make_pillar(max_connections_per_ip=3)
    p.add_user(USER, PASSWORD)
    held = [p.conn() for _ in range(3)]
    try:
        extra = Conn(p.port, greet=False)
        try:
            line = extra.line()
            assert line.startswith(b"-ERR"), line
        except Closed:
            pass
        extra.close()
        held.pop().close()

        def admitted():
            c = Conn(p.port, greet=False)
            try:
                ok = c.line().startswith(b"+OK")
            except Closed:
                ok = False
            if ok:
                c.login(USER, PASSWORD)
                c.ok("QUIT")
            c.close()
            return ok

        wait_for(admitted, 10, "a connection to be admitted after one closed")
    finally:
        for c in held:
            c.close()


# -- logs -------------------------------------------------------------------


def test_logs_failed_logins_with_session_ids_and_no_secrets(mailbox):
    p, _ = mailbox
    with p.conn() as c:
        c.ok("USER " + USER)
        c.err("PASS wrong-Password-xyz")
    with p.conn() as c:
        c.ok("USER ghost@example.test")
        c.err("PASS ghost-Password-xyz")
    c = p.wait_unlocked(USER, PASSWORD)
    c.ok("QUIT")
    c.close()

    def lines_matching(pattern):
        return [l for l in p.log().splitlines() if re.search(pattern, l)]

    wait_for(lambda: len(lines_matching(r"auth failed")) >= 2, 5, "auth failed log lines")
    for who in (USER, "ghost@example.test"):
        found = lines_matching(rf"\bauth failed\b.*\buser={re.escape(who)}.*\brip=127\.0\.0\.1\b")
        assert found, f"no 'auth failed user={who} ... rip=127.0.0.1' line"
        assert all(re.search(r"\bsid=\S+", l) for l in found), found
    log = p.log()
    for secret in ("wrong-Password-xyz", "ghost-Password-xyz", PASSWORD):
        assert secret not in log, f"password {secret!r} in the log"
    # Each session's lines carry that session's id, and sessions differ.
    sids = {re.search(r"\bsid=(\S+)", l).group(1) for l in lines_matching(r"auth failed")}
    assert len(sids) >= 2, sids


def test_sighup_keeps_connections_that_have_not_logged_in_yet(mailbox):
    # A client that connected before the reload logs in after it: the old
    # worker, draining, must still hand the login over and serve it.
    p, msgs = mailbox
    waiting = [p.conn() for _ in range(4)]  # spread over the workers
    old = set(p.workers())
    p.signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in p.log() and set(p.workers()) - old, 10,
             "the reload to start new workers")
    for i, c in enumerate(waiting):
        c.login(USER, PASSWORD)
        assert c.stat()[0] == (3 if i == 0 else 2)
        if i == 0:
            c.ok("DELE 1")
        c.ok("QUIT")
        c.close()
    assert p.uniques_on_disk(USER) == sorted(u for u, _ in msgs[1:])
    # The old workers go away once their sessions are done.
    wait_for(lambda: not (set(p.workers()) & old), 10, "the old workers to exit")
    assert p.proc.poll() is None


def test_sigterm_during_a_big_retr(alice):
    data = b"Subject: big\n\n" + b"0123456789 abcdefghij\n" * 300_000
    uid = alice.deliver(USER, data)
    c = alice.session(USER, PASSWORD)
    c.send("RETR 1\r\nDELE 1\r\n")
    assert c.line().startswith(b"+OK")
    c.sock.recv(4096)  # started, far from finished
    alice.signal(signal.SIGTERM)
    # The client keeps reading: whatever it gets, the connection ends soon
    # and the server exits without applying the DELE.
    c.read_to_eof(timeout=20)
    c.close()
    rc = alice.stop()
    assert rc == 0
    assert alice.uniques_on_disk(USER) == [uid]


def test_every_session_log_line_has_a_session_id(mailbox):
    p, _ = mailbox
    with p.session(USER, PASSWORD) as c:
        c.ok("RETR 1")
        c.multiline()
        c.ok("DELE 1")
        c.ok("QUIT")
    with p.conn() as c:
        c.ok("USER " + USER)
        c.err("PASS nope")
    wait_for(lambda: "auth failed" in p.log(), 5, "the auth failure to be logged")
    session_lines = [l for l in p.log().splitlines() if re.search(r"\b(user|rip)=", l)]
    assert session_lines
    for l in session_lines:
        assert re.search(r"\bsid=\S+", l), f"log line without a session id: {l}"
    login = [l for l in session_lines if re.search(rf"\buser={re.escape(USER)}\b", l)]
    assert len({re.search(r"\bsid=(\S+)", l).group(1) for l in login}) == 2, login
