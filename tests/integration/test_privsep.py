"""Least privilege (DESIGN §3): login workers run as their own account
(login_as), locked in an empty directory. They accept every connection, do
TLS, POP3's login and SMTP/LMTP's EHLO, STARTTLS and AUTH, and hand the
client to a mail worker (run_as) after a POP3 login or at an SMTP client's
first MAIL — the socket itself, or under TLS a socketpair the login worker
relays. These tests look at the real processes from outside: their ids,
root directories and open files, what their credentials can reach, and that
sessions really live in the mail workers."""

import array
import ctypes
import errno
import json
import os
import pwd
import re
import signal
import socket
import struct
import subprocess
import time

import pytest

from harness import (PASSWORD, PILLAR_BIN, USER, is_root, socket_inodes, split_trace,
                     status_of, wait_for)

needs_root = pytest.mark.skipif(not is_root(), reason="the drop and the chroot need root")


def ids(pid):
    st = status_of(pid)
    return st["Uid"].split(), st["Gid"].split(), st.get("Groups", "").split()


def as_user(uid, gid, action, chroot=None):
    """Run action() in a child with exactly these ids (and root directory):
    b"ok", or the name of the errno it failed with (b"ENOENT", b"EACCES")."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only reports
        os.close(r)
        code = b"?"
        try:
            if chroot is not None:
                os.chroot(chroot)
                os.chdir("/")
            os.setgroups([gid])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            try:
                action()
                code = b"ok"
            except OSError as e:
                code = errno.errorcode.get(e.errno, "?").encode()
        finally:
            os.write(w, code)
            os._exit(0)
    os.close(w)
    os.waitpid(child, 0)
    with os.fdopen(r, "rb") as f:
        return f.read()


def open_as(uid, gid, path, chroot=None):
    """Try to open path for reading as uid/gid: b"ok" or the errno's name."""
    def read():
        with open(path, "rb") as f:
            f.read(1)
    return as_user(uid, gid, read, chroot)


def open_files(pid):
    files = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            files.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return files


@pytest.fixture
def box(make_pillar):
    p = make_pillar(pop3s=True, smtp=True, lmtp=True)
    p.add_user(USER, PASSWORD)
    for i in range(3):
        p.deliver(USER, f"Subject: m{i}\n\nbody {i}\n".encode())
    return p


def test_roles_and_counts(box):
    """`workers` login workers and `workers` mail workers."""
    n = int(box.conf_value("workers"))
    assert len(box.workers("login")) == n
    assert len(box.workers("mail")) == n


@needs_root
def test_each_process_runs_as_its_account_in_its_root(box):
    login = pwd.getpwnam(box.conf_value("login_as") or "pillar-login")
    run_as = pwd.getpwnam(box.conf_value("run_as") or "pillar")
    assert login.pw_uid != run_as.pw_uid
    jail = box.dir / "empty"
    st = os.stat(jail)
    assert st.st_uid == 0 and (st.st_mode & 0o7777) == 0o555
    assert os.listdir(jail) == []
    for pid in box.workers("login"):
        uids, gids, groups = ids(pid)
        assert uids == [str(login.pw_uid)] * 4, (pid, uids)
        assert gids == [str(login.pw_gid)] * 4, (pid, gids)
        assert groups == [str(login.pw_gid)], (pid, groups)
        assert os.readlink(f"/proc/{pid}/root") == str(jail)
        assert os.readlink(f"/proc/{pid}/cwd") == str(jail)
        assert status_of(pid)["NoNewPrivs"].strip() == "1"
    for pid in box.workers("mail"):
        uids, gids, _ = ids(pid)
        assert uids == [str(run_as.pw_uid)] * 4, (pid, uids)
        assert gids == [str(run_as.pw_gid)] * 4, (pid, gids)
        assert os.readlink(f"/proc/{pid}/root") == "/"
        assert status_of(pid)["NoNewPrivs"].strip() == "1"
    # The auth process: its own account, not chrooted (it opens the
    # secrets); the master stays root to bind, fork and restart.
    auth_as = pwd.getpwnam(box.conf_value("auth_as") or "pillar-auth")
    assert auth_as.pw_uid not in (login.pw_uid, run_as.pw_uid)
    for pid in box.auth_processes():
        uids, gids, _ = ids(pid)
        assert uids == [str(auth_as.pw_uid)] * 4, (pid, uids)
        assert gids == [str(auth_as.pw_gid)] * 4, (pid, gids)
        assert os.readlink(f"/proc/{pid}/root") == "/"
        assert status_of(pid)["NoNewPrivs"].strip() == "1"
    uids, gids, _ = ids(box.proc.pid)
    assert uids == ["0"] * 4 and gids == ["0"] * 4, (uids, gids)
    assert os.readlink(f"/proc/{box.proc.pid}/root") == "/"


@needs_root
def test_login_worker_cannot_open_a_file_in_the_mail_root(box):
    """Nothing of the mail root or the directory is open in a login worker,
    the mail root does not exist inside its root directory, and a process
    with exactly its credentials and root cannot open a message — nor could
    its account outside the jail."""
    message = next(box.maildir(USER).glob("new/*"))
    state = str(box.dir)
    for pid in box.workers("login"):
        fds = os.listdir(f"/proc/{pid}/fd")
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            assert not target.startswith(state), (pid, fd, target)
            assert not target.startswith(str(box.mail_root)), (pid, fd, target)
        assert not os.path.exists(f"/proc/{pid}/root{box.mail_root}")
        assert not os.path.exists(f"/proc/{pid}/root{state}/directory.db")

    pid = box.workers("login")[0]
    uids, gids, _ = ids(pid)
    uid, gid = int(uids[0]), int(gids[0])
    root = os.readlink(f"/proc/{pid}/root")

    assert open_as(uid, gid, message, chroot=root) == b"ENOENT"
    assert open_as(uid, gid, message) == b"EACCES"


@needs_root
def test_only_the_auth_process_can_open_the_secrets(box):
    """The password hashes, SCRAM keys and APOP secrets are in
    <state_dir>/auth/secrets.db, auth_as's alone. After a delivery and a
    login (so each process has opened what it needs), the auth process holds
    that file and nothing of the mailboxes; the mail workers hold
    directory.db, where no hash is left, and their account cannot open the
    secrets — nor can the login workers'."""
    import sqlite3

    with box.lmtp() as c:
        c.ehlo(verb="LHLO")
        c.expect("MAIL FROM:<carol@example.org>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.data(b"Subject: secrets\r\n\r\nbody\r\n", 250)
    with box.conn() as c:
        c.ok("USER " + USER)
        c.ok("PASS " + PASSWORD)
        c.ok("QUIT")

    auth_as = pwd.getpwnam(box.conf_value("auth_as") or "pillar-auth")
    run_as = pwd.getpwnam(box.conf_value("run_as") or "pillar")
    login = pwd.getpwnam(box.conf_value("login_as") or "pillar-login")
    secrets_dir = box.dir / "auth"
    secrets = secrets_dir / "secrets.db"
    directory = box.dir / "directory.db"
    st = os.stat(secrets_dir)
    assert (st.st_uid, st.st_mode & 0o7777) == (auth_as.pw_uid, 0o700)
    st = os.stat(secrets)
    assert (st.st_uid, st.st_mode & 0o7777) == (auth_as.pw_uid, 0o600)

    for pid in box.auth_processes():
        files = open_files(pid)
        assert str(secrets) in files, files
        assert not any(f.startswith(str(directory)) for f in files), files
    held = set()
    for pid in box.workers("mail"):
        files = open_files(pid)
        assert not any(f.startswith(str(secrets_dir)) for f in files), (pid, files)
        held |= files
    assert str(directory) in held

    assert open_as(run_as.pw_uid, run_as.pw_gid, secrets) == b"EACCES"
    assert open_as(login.pw_uid, login.pw_gid, secrets) == b"EACCES"
    assert open_as(auth_as.pw_uid, auth_as.pw_gid, directory) == b"EACCES"
    assert open_as(auth_as.pw_uid, auth_as.pw_gid, secrets) == b"ok"
    # Nor can run_as move the secrets' directory aside to put one of its
    # own in its place: state_dir is root's and sticky.
    st = os.stat(box.dir)
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o1775)
    aside = box.dir / "auth.aside"
    assert as_user(run_as.pw_uid, run_as.pw_gid,
                   lambda: os.rename(secrets_dir, aside)) == b"EPERM"
    assert as_user(run_as.pw_uid, run_as.pw_gid, lambda: os.rmdir(secrets_dir)) == b"EPERM"
    assert secrets_dir.is_dir() and not aside.exists()

    db = sqlite3.connect(f"file:{secrets}?mode=ro", uri=True)
    (hash_,) = db.execute("SELECT password_hash FROM credentials WHERE address = ?",
                          (USER,)).fetchone()
    db.close()
    assert hash_.startswith("$")
    for path in (directory, box.dir / "directory.db-wal"):
        if path.exists():
            assert hash_.encode() not in path.read_bytes(), path


@needs_root
def test_a_state_dir_of_run_as_s_becomes_root_s(make_pillar):
    """An older pillar init gave state_dir to run_as, who could then move
    the secrets' directory away: the server, as root, makes it root's
    (group run_as, sticky) before it opens the secrets, and serves."""
    p = make_pillar(start=False)
    p.add_user(USER, PASSWORD)
    run_as = pwd.getpwnam(p.conf_value("run_as") or "pillar")
    os.chown(p.dir, run_as.pw_uid, run_as.pw_gid)
    os.chmod(p.dir, 0o755)
    p.start()
    st = os.stat(p.dir)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, run_as.pw_gid, 0o1775)
    with p.conn() as c:
        c.login(USER, PASSWORD)
        c.ok("QUIT")


def test_plain_session_lives_in_a_mail_worker(box):
    """After PASS the client's socket is a mail worker's: killing every login
    worker does not touch the session."""
    with box.conn() as c:
        c.login(USER, PASSWORD)
        holder = box.holder_of(c)
        assert holder in box.workers("mail")
        for pid in box.workers("login"):
            os.kill(pid, signal.SIGKILL)
        count, _ = c.stat()
        assert count == 3
        c.ok("RETR 1")
        c.multiline()
        c.ok("QUIT")


def test_tls_session_is_relayed_and_listed_once(box):
    """Under TLS the login worker relays. A large message arrives intact,
    `pillar who` lists the session once, with its TLS, from the mail side,
    and a DELE and QUIT the client sends just before closing still count."""
    big = b"Subject: big\n\n" + b"".join(b"line %07d of a large message\n" % i for i in range(40000))
    box.deliver(USER, big)
    with box.pop3s() as c:
        c.login(USER, PASSWORD)
        c.ok("RETR 4")
        body = c.multiline_raw()
        assert body.replace(b"\r\n", b"\n").endswith(b"line 0039999 of a large message\n.\n")
        who = box.cli("who", "--json").stdout.decode()
        assert who.count(USER) == 1, who
        assert "TLS" in who, who
        c.send("DELE 1\r\nQUIT\r\n")
    # The client closed at once; the relay still delivered DELE and QUIT.
    wait_for(lambda: len(box.files(USER)) == 3, 10, "the DELE to be applied")


def test_pillar_who_and_kick_over_tls(box):
    with box.pop3s() as c:
        c.login(USER, PASSWORD)
        box.cli("kick", USER)
        # Kicked on the mail side; the relay then closes the TLS side.
        assert c.read_to_eof(timeout=10) == b""
    wait_for(lambda: USER not in box.cli("who").stdout.decode(), 10, "the session to go")


def listening_sockets():
    """Every listening TCP and unix socket ("socket:[N]")."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/net/{table}") as f:
            next(f)
            inodes |= {f"socket:[{row.split()[9]}]" for row in f if row.split()[3] == "0A"}
    with open("/proc/net/unix") as f:
        next(f)
        # Flags 00010000: __SO_ACCEPTCON, a socket that listen() was called on.
        inodes |= {f"socket:[{row.split()[6]}]" for row in f if row.split()[3] == "00010000"}
    return inodes


def test_only_login_workers_accept_and_only_they_ask_the_auth_process(box):
    """Every listener (POP3, POP3S, SMTP, LMTP) is open in the login workers;
    a mail worker has no listening socket at all, and no connection to the
    auth process: it takes clients only from the hand-off."""
    listening = listening_sockets()
    for pid in box.workers("login"):
        assert len(socket_inodes(pid) & listening) >= 4, pid
    for pid in box.workers("mail"):
        assert not socket_inodes(pid) & listening, pid
    log = box.log()
    for pid in box.workers("login"):
        assert re.search(rf"event=auth-client pid={pid} ", log), pid
    for pid in box.workers("mail"):
        assert not re.search(rf"event=auth-client pid={pid} ", log), pid


def test_smtp_session_moves_to_a_mail_worker_at_its_first_mail(box):
    """EHLO is answered by a login worker. The first MAIL hands the socket,
    with that MAIL and the RCPT pipelined after it, to a mail worker; from
    there the session needs no login worker, and offers neither STARTTLS nor
    AUTH any more."""
    with box.smtp() as c:
        kw = c.keywords(c.ehlo())
        assert "STARTTLS" in kw and "AUTH" in kw, kw
        assert box.holder_of(c) in box.workers("login")
        c.send(f"MAIL FROM:<carol@example.org>\r\nRCPT TO:<{USER}>\r\n")
        assert [r.code for r in c.replies(2)] == [250, 250]
        assert box.holder_of(c) in box.workers("mail")
        for pid in box.workers("login"):
            os.kill(pid, signal.SIGKILL)
        c.data(b"Subject: handed off\r\n\r\nbody\r\n", 250)
        kw = c.keywords(c.ehlo())
        assert "STARTTLS" not in kw and "AUTH" not in kw, kw
        c.expect("STARTTLS", 503, "5.5.1")
        c.expect("AUTH PLAIN", 503, "5.5.1")
        c.expect("QUIT", 221)
    stored = [m for m in box.wait_stored(USER, 4) if b"Subject: handed off" in m]
    assert len(stored) == 1
    _, received, _ = split_trace(stored[0])
    # What the login worker learnt (the HELO name) travelled with it.
    assert re.search(rb"from client\.example\.org \(\[127\.0\.0\.1\]\)", received), received
    assert re.search(rb"\bwith ESMTP\b", received), received


def test_smtp_error_count_travels_with_the_session(box):
    """The 20-failed-commands limit counts the login worker's failures too."""
    with box.lmtp() as c:
        c.ehlo(verb="LHLO")
        for _ in range(19):
            c.expect("XYZZY", 500)
        c.expect("MAIL FROM:<carol@example.org>", 250)
        assert c.cmd("XYZZY").code == 500
        assert c.reply().code == 421
        assert c.read_to_eof(timeout=10) == b""


def test_smtp_tls_and_auth_stay_in_the_login_worker_which_relays(box):
    """STARTTLS and AUTH happen in the login worker, which then relays the
    encrypted session to a mail worker: `pillar who` lists it once, with its
    user and TLS, and the message says ESMTPSA (RFC 3848)."""
    s = box.smtplib()
    try:
        s.ehlo()
        assert s.starttls(context=box.tls_context())[0] == 220
        s.ehlo()
        assert s.login(USER, PASSWORD)[0] == 235
        assert s.mail("carol@example.org")[0] == 250
        assert s.rcpt(USER)[0] == 250
        who = [w for w in json.loads(box.cli("who", "--json").stdout_text)
               if w["protocol"].lower() == "smtp"]
        assert len(who) == 1, who
        assert who[0]["user"] == USER and "TLS" in json.dumps(who[0]), who
        assert s.data(b"Subject: relayed\r\n\r\nbody\r\n")[0] == 250
        s.quit()
    finally:
        s.close()
    stored = [m for m in box.wait_stored(USER, 4) if b"Subject: relayed" in m]
    assert len(stored) == 1
    _, received, _ = split_trace(stored[0])
    assert re.search(rb"\bwith ESMTPSA\b", received), received
    assert re.search(rb"TLSv1\.[23]", received), received


@needs_root
def test_refuses_a_jail_that_is_not_empty(make_pillar):
    p = make_pillar(start=False)
    jail = p.dir / "empty"
    jail.mkdir(mode=0o555, exist_ok=True)
    (jail / "stray").write_text("x")
    r = subprocess.run([PILLAR_BIN, "serve", "--foreground", "-c", str(p.conf)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert "must be an empty directory" in r.stderr, r.stderr


def seccomp_modes(pid):
    """Seccomp mode of every thread of pid: {"2"} under a filter."""
    return {status_of(f"{pid}/task/{tid}")["Seccomp"].strip()
            for tid in os.listdir(f"/proc/{pid}/task")}


def test_every_serving_process_runs_under_a_syscall_allow_list(box):
    """Seccomp filter mode (2) in every thread of every login worker, mail
    worker and auth process, all still alive after a login, a failed
    login, a TLS session and an LMTP delivery have gone through them. (A
    sanitizer build leaves the filter out: its runtime makes calls of its
    own.)"""
    with box.conn() as c:
        c.ok("USER " + USER)
        c.err("PASS wrong")
    with box.pop3s() as c:
        c.login(USER, PASSWORD)
        c.ok("QUIT")
    with box.lmtp() as c:
        c.ehlo(verb="LHLO")
        c.expect("MAIL FROM:<sender@example.org>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.data(b"Subject: under seccomp\r\n\r\nbody\r\n", 250)
    with box.session(USER, PASSWORD) as c:
        assert c.stat()[0] == 4
        c.ok("DELE 4")
        c.ok("QUIT")
    procs = {"login": box.workers("login"), "mail": box.workers("mail"),
             "auth": box.auth_processes()}
    assert all(procs.values()), procs
    for role, pids in procs.items():
        for pid in pids:
            with open(f"/proc/{pid}/maps") as f:
                sanitized = "libasan" in f.read()
            assert seccomp_modes(pid) == {"0" if sanitized else "2"}, (role, pid)
    after = {"login": box.workers("login"), "mail": box.workers("mail"),
             "auth": box.auth_processes()}
    assert after == procs, "a process died"


# -- the hand-off record is checked, not trusted ---------------------------------

def handoff_record(proto, user=b"", ticket=b"", inlen=0, sid=b"forgedsid123"):
    """A hand-off record as a login worker sends it (struct handoff_wire in
    src/server/handoff.c, x86-64 layout): 832 octets, then inlen of input."""
    peer = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 40000) + bytes([127, 0, 0, 1])
    rec = struct.pack("=IBBBBIIII128sQq13s256s256s40s96s",
                      0x50494C32, 1, proto, 1, 0, 0, 16, inlen, 0,
                      peer.ljust(128, b"\0"), time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 10**6,
                      int(time.time()), sid + b"\0", user.ljust(256, b"\0"),
                      b"client.example.org".ljust(256, b"\0"), ticket.ljust(40, b"\0"), b"\0" * 96)
    return rec + b"\0" * 3  # the struct's tail padding (8-octet alignment)


def steal_handoff_socket(box):
    """The sending end of the hand-off socket, taken out of a login worker
    with pidfd_getfd(2): what an attacker who took over a login worker
    holds. It is the one socket but the listeners that a login worker shares
    with the master."""
    libc = ctypes.CDLL(None, use_errno=True)
    login = box.workers("login")[0]
    shared = socket_inodes(login) & socket_inodes(box.pid) - listening_sockets()
    assert len(shared) == 1, shared
    for fd in os.listdir(f"/proc/{login}/fd"):
        try:
            if os.readlink(f"/proc/{login}/fd/{fd}") in shared:
                break
        except OSError:
            pass
    pidfd = libc.syscall(434, login, 0)  # pidfd_open
    if pidfd < 0:
        pytest.skip(f"pidfd_open: {os.strerror(ctypes.get_errno())}")
    try:
        stolen = libc.syscall(438, pidfd, int(fd), 0)  # pidfd_getfd
        if stolen < 0:
            pytest.skip(f"pidfd_getfd: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(pidfd)
    return socket.socket(fileno=stolen)


def hand_off(sock, record, data=b""):
    """Send a record with one end of a new socketpair; returns our end."""
    ours, theirs = socket.socketpair()
    sock.sendmsg([record + data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [theirs.fileno()]))])
    theirs.close()
    ours.settimeout(10)
    return ours


@needs_root
def test_mail_workers_serve_no_user_without_the_auth_process_ticket(box):
    """A login worker taken over cannot have a mail worker open a mailbox
    the auth process did not just log in: records that name a user with no
    valid ticket are dropped (POP3, and SMTP claiming AUTH), while one that
    names nobody — an SMTP client at its first MAIL — is served, which shows
    the records were well formed."""
    sock = steal_handoff_socket(box)
    try:
        for proto, ticket in ((0, b""), (0, os.urandom(40)), (1, b"")):
            c = hand_off(sock, handoff_record(proto, USER.encode(), ticket))
            assert c.recv(4096) == b"", (proto, ticket)
            c.close()
        mail = b"MAIL FROM:<carol@example.org>\r\n"
        c = hand_off(sock, handoff_record(1, inlen=len(mail)), mail)
        assert c.recv(4096).startswith(b"250 "), "an SMTP hand-off with no user was not served"
        c.sendall(b"QUIT\r\n")
        assert c.recv(4096).startswith(b"221 ")
        c.close()
    finally:
        sock.close()
    wait_for(lambda: box.log().count("event=handoff-bad reason=bad-ticket") == 3, 10,
             "three records refused for their ticket")
    assert f"reason=bad-ticket user={USER}" in box.log()
    # The real ones still go through.
    with box.session(USER, PASSWORD) as c:
        assert c.stat()[0] == 3
        c.ok("QUIT")
