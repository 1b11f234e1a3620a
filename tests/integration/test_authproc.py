"""The auth process (DESIGN §3; src/auth/authd.c, src/server/authproc.c): one
per worker generation, the only process that reads the directory's secrets
and hashes passwords. Workers ask it over an abstract AF_UNIX
SOCK_SEQPACKET socket the master made.

Checked here with the real server: the process exists under the master
with its own name, runs as auth_as and is none of the workers; every login
goes through it; a `kill -9` of it is survived (a login in the gap gets a
temporary error or succeeds, and every kind of login works again within a
bound); a reload gives the new generation a new one and the old one exits
once its workers have; and a process of another account cannot use its
socket."""

import hashlib
import os
import re
import signal
import struct
import subprocess
import sys
import time

import pytest

from harness import (
    AUTH_COMM,
    BOB,
    BOB_PASSWORD,
    PASSWORD,
    USER,
    comm_of,
    is_root,
    pid_alive,
    simple_message,
    socket_inodes,
    status_of,
    wait_for,
)
from test_auth import APOP_TS, B64, plain, pop3_auth, pop3_scram, smtp_auth, smtp_scram

# How long logins may keep failing after the auth process was killed: the
# master restarts it at once, or after its 1 s backoff when it died young.
RECOVERY_S = 10

TEMP_POP3 = b"-ERR [SYS/TEMP]"


@pytest.fixture
def box(make_pillar):
    """POP3 with APOP, SMTP, alice (APOP secret set, one message) and bob."""
    p = make_pillar(smtp=True, apop="yes")
    p.add_user(USER, PASSWORD)
    p.add_user(BOB, BOB_PASSWORD)
    p.cli("user", "passwd", USER, "--password-stdin", "--apop", input=PASSWORD + "\n")
    p.deliver(USER, simple_message(1))
    return p


def the_auth_process(p):
    procs = wait_for(lambda: p.auth_processes(), 10, "an auth process")
    assert len(procs) == 1, f"expected one auth process, found {procs}"
    return procs[0]


def listening_inode(port):
    with open("/proc/net/tcp") as f:
        next(f)
        for row in f:
            fields = row.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
                return f"socket:[{fields[9]}]"
    raise AssertionError(f"no listening socket for port {port}")


def auth_address(p, pid):
    """The abstract name the auth process pid listens on, from the log."""
    m = re.search(rf"auth process started pid={pid} generation=\d+ addr=@(\S+)", p.log())
    assert m, "no 'auth process started' line for pid %d" % pid
    return "\0" + m.group(1)


# -- logins of every kind --------------------------------------------------------


def pop3_pass(p):
    with p.conn() as c:
        c.ok("USER " + USER)
        return c.cmd("PASS " + PASSWORD)


def pop3_plain(p):
    with p.conn() as c:
        return pop3_auth(c, "PLAIN", plain(USER, PASSWORD))[0]


def pop3_scram_login(p):
    with p.conn() as c:
        return pop3_scram(c, USER, PASSWORD)[0]


def pop3_apop(p):
    with p.conn() as c:
        ts = APOP_TS.search(c.greeting).group(1)
        return c.cmd(f"APOP {USER} {hashlib.md5(ts + PASSWORD.encode()).hexdigest()}")


def smtp_plain(p):
    c = p.smtp()
    try:
        c.ehlo()
        r = smtp_auth(c, "PLAIN", plain(BOB, BOB_PASSWORD))[0]
        return f"{r.code} {r.text.decode()}".encode()
    finally:
        c.close()


def smtp_scram_login(p):
    c = p.smtp()
    try:
        c.ehlo()
        r = smtp_scram(c, BOB, BOB_PASSWORD)[0]
        return f"{r.code} {r.text.decode()}".encode()
    finally:
        c.close()


POP3_LOGINS = [pop3_pass, pop3_plain, pop3_scram_login, pop3_apop]
SMTP_LOGINS = [smtp_plain, smtp_scram_login]


def succeeded(reply):
    return reply.startswith(b"+OK") or reply.startswith(b"235 ")


def temporary(reply):
    """A temporary failure. [IN-USE] counts: the POP3 helpers drop their
    connection right after the login, and the next login may reach the
    mailbox (on the other mail worker) before that session has let go."""
    return (reply.startswith(TEMP_POP3) or reply.startswith(b"-ERR [IN-USE]")
            or reply.startswith(b"454 "))


def login_soon(p, login, timeout=RECOVERY_S):
    """Retry a login while it fails temporarily; it must succeed in time,
    and never fail any other way."""
    deadline = time.monotonic() + timeout
    while True:
        reply = login(p)
        if succeeded(reply):
            return
        assert temporary(reply), f"{login.__name__}: {reply!r}"
        assert time.monotonic() < deadline, f"{login.__name__} still failing: {reply!r}"
        time.sleep(0.1)


# -- the process ----------------------------------------------------------------


def test_one_auth_process_under_the_master(box):
    p = box
    auth = the_auth_process(p)
    assert comm_of(auth) == AUTH_COMM
    assert int(status_of(auth)["PPid"]) == p.pid
    assert f"auth process started pid={auth} " in p.log()
    # No worker is it, and the workers are all there besides it.
    workers = p.workers()
    assert len(p.workers("login")) == 2 and len(p.workers("mail")) == 2, workers
    assert len(workers) == 4, workers
    assert auth not in workers
    assert all(comm_of(w) != AUTH_COMM for w in workers)
    # It asks for no new privileges, and holds none of the listeners.
    assert status_of(auth)["NoNewPrivs"].strip() == "1"
    sockets = socket_inodes(auth)
    for port in (p.port, p.smtp_port):
        assert listening_inode(port) not in sockets, f"the auth process holds port {port}"


@pytest.mark.skipif(not is_root(), reason="privilege drop happens only when started as root")
def test_auth_process_runs_as_auth_as(box):
    import pwd

    p = box
    pw = pwd.getpwnam(p.conf_value("auth_as") or "pillar-auth")
    auth = the_auth_process(p)
    st = status_of(auth)
    assert st["Uid"].split() == [str(pw.pw_uid)] * 4, st["Uid"]
    assert st["Gid"].split() == [str(pw.pw_gid)] * 4, st["Gid"]
    assert "0" not in st.get("Groups", "").split(), st.get("Groups")


def test_logins_wait_for_the_auth_process(box):
    """A stopped auth process holds every check: the workers do not check
    passwords themselves."""
    p = box
    auth = the_auth_process(p)
    with p.conn() as c, p.smtp() as s:
        c.ok("USER " + USER)
        s.ehlo()
        os.kill(auth, signal.SIGSTOP)
        try:
            c.send("PASS " + PASSWORD + "\r\n")
            s.send("AUTH PLAIN " + B64(plain(BOB, BOB_PASSWORD)) + "\r\n")
            assert not c.pending(1.0), "a login was answered while the auth process was stopped"
            assert not s.pending(0.2), "an SMTP AUTH was answered while the auth process was stopped"
        finally:
            os.kill(auth, signal.SIGCONT)
        assert c.line().startswith(b"+OK")
        assert s.reply().code == 235
        assert c.stat()[0] == 1


def test_a_hung_auth_process_fails_logins_temporarily(make_pillar):
    """A stopped auth process is given up on after the client's 30 s
    (AUTHC_TIMEOUT_MS): the login fails temporarily instead of hanging, and
    the next one works once the process runs again."""
    p = make_pillar(smtp=True, login_timeout="2m")
    p.add_user(USER, PASSWORD)
    auth = the_auth_process(p)
    with p.conn() as c, p.smtp() as s:
        c.ok("USER " + USER)
        s.ehlo()
        os.kill(auth, signal.SIGSTOP)
        try:
            start = time.monotonic()
            c.send("PASS " + PASSWORD + "\r\n")
            s.send("AUTH PLAIN " + B64(plain(USER, PASSWORD)) + "\r\n")
            reply = c.line(timeout=60)
            waited = time.monotonic() - start
            r = s.reply(timeout=60)
        finally:
            os.kill(auth, signal.SIGCONT)
        assert reply.startswith(TEMP_POP3), reply
        assert 25 < waited < 45, waited
        assert r.code == 454, r
        login_soon(p, pop3_pass)
        login_soon(p, smtp_plain_alice)
    assert "event=auth-connection-lost" in p.log()
    assert p.auth_processes() == [auth]


def smtp_plain_alice(p):
    c = p.smtp()
    try:
        c.ehlo()
        r = smtp_auth(c, "PLAIN", plain(USER, PASSWORD))[0]
        return f"{r.code} {r.text.decode()}".encode()
    finally:
        c.close()


# -- kill -9 ---------------------------------------------------------------------


def kill_auth(p):
    auth = the_auth_process(p)
    os.kill(auth, signal.SIGKILL)
    wait_for(lambda: not pid_alive(auth), 5, "the auth process to die")
    return auth


def test_kill_9_logins_recover(box):
    p = box
    old = kill_auth(p)
    # In the gap: a temporary error, or a success once the new one is up.
    for login in POP3_LOGINS + SMTP_LOGINS:
        reply = login(p)
        assert succeeded(reply) or temporary(reply), f"{login.__name__}: {reply!r}"
    new = wait_for(lambda: [a for a in p.auth_processes() if a != old], RECOVERY_S,
                   "a new auth process")
    assert len(new) == 1, new
    assert re.search(rf"auth process died pid={old} signal=9", p.log()), p.log()[-3000:]
    for login in POP3_LOGINS + SMTP_LOGINS:
        login_soon(p, login)
    # Twice in a row (the second within the restart backoff) is survived too.
    for _ in range(2):
        kill_auth(p)
        for login in POP3_LOGINS + SMTP_LOGINS:
            login_soon(p, login)
    assert p.proc.poll() is None
    assert len(p.workers("login")) == 2 and len(p.workers("mail")) == 2


def test_kill_9_in_the_middle_of_a_sasl_exchange(box):
    """The exchange's state died with the process: the next step fails
    temporarily (not as a wrong password), and a new AUTH then works."""
    p = box
    with p.conn() as c, p.smtp() as s:
        s.ehlo()
        c.send("AUTH LOGIN\r\n")
        assert c.line().startswith(b"+ ")
        s.send("AUTH LOGIN\r\n")
        assert s.reply().code == 334
        kill_auth(p)
        reply = c.cmd(B64(USER))
        assert reply.startswith(TEMP_POP3), reply
        r = s.cmd(B64(BOB))
        assert r.code == 454, r
        # No failure was counted for the address: the login works at once
        # when the new process is up.
        wait_for(lambda: p.auth_processes(), RECOVERY_S, "a new auth process")
        deadline = time.monotonic() + RECOVERY_S
        while True:
            reply = pop3_auth(c, "PLAIN", plain(USER, PASSWORD))[0]
            if reply.startswith(b"+OK") or time.monotonic() > deadline:
                break
            assert reply.startswith(TEMP_POP3), reply
        assert reply.startswith(b"+OK"), reply
        assert c.stat()[0] == 1
    assert "auth failed" not in p.log()


# -- reload ----------------------------------------------------------------------


def test_reload_gives_a_new_auth_process_and_the_old_one_exits(box):
    p = box
    old = the_auth_process(p)
    # A client of an old worker, not logged in yet, keeps the old process.
    waiting = [p.conn() for _ in range(4)]
    old_workers = set(p.workers())
    p.signal(signal.SIGHUP)
    new = wait_for(lambda: [a for a in p.auth_processes() if a != old], 10,
                   "a new auth process")
    assert len(new) == 1, new
    wait_for(lambda: "reloaded" in p.log(), 10, "the reload")
    assert pid_alive(old), "the old auth process left while its workers had clients"
    # New workers log in through the new process...
    for login in POP3_LOGINS + SMTP_LOGINS:
        assert succeeded(login(p)), login.__name__
    # ...and the old workers' clients through the old one.
    for i, c in enumerate(waiting):
        c.login(USER if i == 0 else BOB, PASSWORD if i == 0 else BOB_PASSWORD)
        c.ok("QUIT")
        c.close()
    wait_for(lambda: not (set(p.workers()) & old_workers), 10, "the old workers to exit")
    wait_for(lambda: not pid_alive(old), 10, "the old auth process to exit")
    assert p.auth_processes() == new
    # A zombie counts as gone; the master logs once it has reaped it.
    wait_for(lambda: re.search(rf"auth process exited pid={old} ", p.log()), 10,
             "the master to log the old auth process's exit")
    # A second reload: the same again.
    p.signal(signal.SIGHUP)
    newer = wait_for(lambda: [a for a in p.auth_processes() if a not in new], 10,
                     "another auth process")
    wait_for(lambda: not pid_alive(new[0]), 10, "the previous auth process to exit")
    assert p.auth_processes() == newer
    assert succeeded(pop3_pass(p))


def test_stop_ends_the_auth_process(box):
    p = box
    auth = the_auth_process(p)
    assert p.stop() == 0
    assert not pid_alive(auth)


# -- the socket ------------------------------------------------------------------


def pass_request(user, password, req_id=1):
    """An AUTHP_PASS record (src/auth/authproto.h): header u16 type, u16 0,
    u32 id; then each string as u16 length (with its NUL) and the bytes."""
    out = struct.pack("=HHI", 1, 0, req_id)
    for s in (user.encode() + b"\0", password.encode() + b"\0"):
        out += struct.pack("=H", len(s)) + s
    return out


ASK_SCRIPT = """
import os, socket, sys
os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[1]))
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(10)
s.connect(sys.argv[3].encode("latin-1").replace(b"@", b"\\0", 1))
try:
    s.send(bytes.fromhex(sys.argv[4]))
    reply = s.recv(8192)
except (BrokenPipeError, ConnectionResetError):
    reply = b""  # closed by the server
sys.stdout.write(reply.hex())
"""


def ask_as(uid, gid, address, request):
    """Send one request to the auth socket from a process of uid/gid; the
    reply record (b"" when the connection was closed instead)."""
    r = subprocess.run([sys.executable, "-c", ASK_SCRIPT, str(uid), str(gid),
                        address.replace("\0", "@", 1), request.hex()],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return bytes.fromhex(r.stdout.decode())


@pytest.mark.skipif(not is_root(), reason="needs root to act as another account")
def test_other_accounts_cannot_use_the_auth_socket(box):
    import pwd

    p = box
    auth = the_auth_process(p)
    address = auth_address(p, auth)
    request = pass_request(USER, PASSWORD)
    # The login workers' account is answered (so the request itself is
    # good)...
    pw = pwd.getpwnam(p.conf_value("login_as") or "pillar-login")
    reply = ask_as(pw.pw_uid, pw.pw_gid, address, request)
    rtype, _, rid, result = struct.unpack("=HHII", reply[:12])
    assert (rtype, rid, result) == (6, 1, 0), reply  # AUTHP_VERIFY_REPLY, AUTH_OK
    assert USER.encode() in reply
    # ...anyone else is turned away before a byte is read: the mail workers'
    # account too (every credential check is over before a hand-off).
    mail = pwd.getpwnam(p.conf_value("run_as") or "pillar")
    stranger = pwd.getpwnam("nobody")
    for other in (mail, stranger):
        assert other.pw_uid != pw.pw_uid
        assert ask_as(other.pw_uid, other.pw_gid, address, request) == b""
        assert re.search(rf"event=auth-client-refused pid=\d+ uid={other.pw_uid}", p.log())
    # A malformed record costs the sender its connection, nothing else.
    assert ask_as(pw.pw_uid, pw.pw_gid, address, request[:-1]) == b""
    assert "event=auth-client-dropped" in p.log()
    assert p.auth_processes() == [auth]
    assert succeeded(pop3_pass(p))
