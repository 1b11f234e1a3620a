"""Bad input over a raw socket: every case gets a clear -ERR (or, for
unbounded input, a disconnect), never a crash or a hang, changes nothing in
the mailbox, and afterwards a fresh client is still served."""

import os
import socket
import time

import pytest

from harness import PASSWORD, USER, Closed, Conn, vsize

BAD_NUMBERS = ["0", "-1", "+1", "1x", "x1", "x", "1.0", "0x1", "4", "4294967297",
               "4294967296", "18446744073709551617", "99999999999999999999", "１"]


def fresh_client_is_served(p, msgs):
    """A new client logs in and sees every message untouched."""
    c = p.wait_unlocked(USER, PASSWORD)
    assert c.stat() == (len(msgs), sum(vsize(d) for _, d in msgs))
    assert [u for _, u in c.uidls()] == [u for u, _ in msgs]
    c.ok("QUIT")
    c.close()
    assert p.proc.poll() is None, "server exited"


# The server may end a connection that sends many bad commands in a row;
# that is its right, so each connection here gets only a few.
BATCH = 4


def refused(p, cmds, count=3, login=True):
    """Each command gets -ERR; after each batch the connection still works
    (logs in, or in TRANSACTION still sees `count` messages)."""
    for i in range(0, len(cmds), BATCH):
        c = p.wait_unlocked(USER, PASSWORD) if login else p.conn()
        try:
            for cmd in cmds[i : i + BATCH]:
                reply = c.cmd(cmd if isinstance(cmd, bytes) else cmd.encode())
                assert reply.startswith(b"-ERR"), (cmd, reply)
            if not login:
                c.login(USER, PASSWORD)
            assert c.stat()[0] == count
            c.ok("QUIT")
        finally:
            c.close()


# STLS and AUTH are real commands (test_tls.py, test_auth.py); "STLS x" with an
# argument is still refused.
UNKNOWN = ["FOO", "LAST", "HELO x", "EHLO x", "XYZZY", "STLS x", "UTF8", "RETRX 1", "RE",
           "R", "123", "STAT1", "GET / HTTP/1.0", "\u00e9t\u00e9"]


def test_unknown_commands_before_login(mailbox):
    p, msgs = mailbox
    refused(p, UNKNOWN, login=False)
    fresh_client_is_served(p, msgs)


def test_unknown_commands_after_login(mailbox):
    p, msgs = mailbox
    refused(p, UNKNOWN)
    fresh_client_is_served(p, msgs)


def test_endless_bad_commands(mailbox):
    # However the server deals with a client that only sends junk (answers
    # every line, or gives up on it), it never says +OK and never applies
    # the session's deletions.
    p, msgs = mailbox
    with p.session(USER, PASSWORD) as c:
        c.ok("DELE 1")
        c.send(b"BOGUS\r\n" * 300)
        replies = []
        try:
            for _ in range(300):
                replies.append(c.line())
        except Closed:
            pass
        assert replies, "no reply at all to bad commands"
        assert all(r.startswith(b"-ERR") for r in replies), replies
    fresh_client_is_served(p, msgs)


def test_empty_and_blank_lines(mailbox):
    p, msgs = mailbox
    refused(p, [b"", b" ", b"   ", b"\t"], login=False)
    refused(p, [b"", b" ", b"   ", b"\t"])
    fresh_client_is_served(p, msgs)


def test_wrong_argument_counts(mailbox):
    p, msgs = mailbox
    refused(p, ["USER", "QUIT now", "CAPA x"], login=False)
    refused(p, ["STAT 1", "NOOP x", "RSET 1", "RETR", "RETR 1 2", "DELE", "DELE 1 2", "TOP",
                "TOP 1", "TOP 1 2 3", "LIST 1 2", "UIDL 1 2", "CAPA x"])
    fresh_client_is_served(p, msgs)


@pytest.mark.parametrize("command", ["RETR {}", "DELE {}", "LIST {}", "UIDL {}", "TOP {} 0"])
def test_bad_message_numbers(mailbox, command):
    p, msgs = mailbox
    refused(p, [command.format(n) for n in BAD_NUMBERS])
    fresh_client_is_served(p, msgs)


def test_bad_top_line_counts(mailbox):
    p, msgs = mailbox
    refused(p, [f"TOP 1 {n}" for n in ["-1", "+1", "1x", "x", "", "1.5", "0x10"]])
    with p.session(USER, PASSWORD) as c:
        c.ok("TOP 1 0")
        c.multiline()
        c.ok("QUIT")
    fresh_client_is_served(p, msgs)


def test_deleted_messages_are_refused(mailbox):
    p, msgs = mailbox
    with p.session(USER, PASSWORD) as c:
        c.ok("DELE 2")
        for cmd in ("RETR 2", "DELE 2", "LIST 2", "UIDL 2", "TOP 2 0"):
            c.err(cmd)
        c.ok("RETR 1")
        c.multiline()
        c.ok("RSET")
        c.ok("QUIT")
    fresh_client_is_served(p, msgs)


def test_line_over_255_octets_is_refused(mailbox):
    p, msgs = mailbox
    refused(p, ["USER " + "a" * 300], login=False)
    refused(p, ["NOOP " + "x" * 260, "RETR " + "1" * 251, "LIST " + "0" * 1000 + "1",
                "STAT" + " " * 300])
    fresh_client_is_served(p, msgs)


def test_password_line_over_255_octets_is_refused(mailbox):
    p, msgs = mailbox
    with p.conn() as c:
        c.ok("USER " + USER)
        c.err("PASS " + PASSWORD + "x" * 300)
    fresh_client_is_served(p, msgs)


def _flood(c, limit):
    """Send a line that never ends; returns how much was sent before the
    server closed the connection, or None if it never did."""
    chunk = b"A" * 8192
    sent = 0
    c.sock.settimeout(10)
    try:
        while sent < limit:
            c.sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        return sent
    except socket.timeout:
        return None  # the server stopped reading but kept the connection
    # All sent: the server must still close on its own.
    try:
        rest = c.read_to_eof(timeout=10)
    except TimeoutError:
        return None
    assert rest == b"" or rest.startswith(b"-ERR"), rest[:100]
    return sent


@pytest.mark.parametrize("state", ["authorization", "transaction"])
def test_endless_line_disconnects(mailbox, state):
    p, msgs = mailbox
    c = p.conn() if state == "authorization" else p.session(USER, PASSWORD)
    try:
        sent = _flood(c, 16 * 1024 * 1024)
        assert sent is not None, "a line without end was neither cut off nor the client disconnected"
    finally:
        c.close()
    fresh_client_is_served(p, msgs)


def test_nul_bytes(mailbox):
    p, msgs = mailbox
    refused(p, [b"USER \x00" + USER.encode(), b"\x00"], login=False)
    refused(p, [b"NOOP\x00", b"NO\x00OP", b"STAT\x00\x00", b"RETR 1\x00", b"DELE \x001",
                b"\x00\x00\x00"])
    fresh_client_is_served(p, msgs)


def test_nul_in_password_is_not_a_login(mailbox):
    p, msgs = mailbox
    with p.conn() as c:
        c.ok("USER " + USER)
        reply = c.cmd(b"PASS " + PASSWORD.encode() + b"\x00junk")
        assert reply.startswith(b"-ERR"), reply
        c.err("STAT")
    fresh_client_is_served(p, msgs)


def test_bare_cr(mailbox):
    p, msgs = mailbox
    with p.session(USER, PASSWORD) as c:
        # Bare CR is not a line end: this is one bad line, not two commands.
        c.send(b"DELE 1\rDELE 2\r\n")
        reply = c.line()
        assert reply.startswith(b"-ERR"), reply
        c.ok("NOOP")
        c.err(b"NOOP\r")
        c.err(b"\rNOOP")
        assert c.stat()[0] == 3, "bare CR was taken as a line end"
        c.ok("QUIT")
    fresh_client_is_served(p, msgs)


def test_control_characters(mailbox):
    p, msgs = mailbox
    refused(p, [b"NOOP\x1b[2J", b"\x7fSTAT", b"RETR\t1", b"LIST\x0b"])
    fresh_client_is_served(p, msgs)


def test_crlf_split_across_writes_is_one_line_end(mailbox):
    p, msgs = mailbox
    with p.session(USER, PASSWORD) as c:
        c.send(b"NOOP\r")
        time.sleep(0.1)
        c.send(b"\nSTAT\r\n")
        assert c.line().startswith(b"+OK")
        assert c.line().startswith(b"+OK 3 ")
        c.ok("QUIT")
    fresh_client_is_served(p, msgs)


def test_garbage_binary_input(mailbox):
    import random

    p, msgs = mailbox
    rng = random.Random(1939)
    junk = []
    for _ in range(40):
        j = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        junk.append(j.replace(b"\n", b"").replace(b"\r", b""))
    refused(p, junk)
    fresh_client_is_served(p, msgs)


def test_connect_and_close_immediately(mailbox):
    p, msgs = mailbox
    # Fewer than max_connections_per_ip (20) in all: the server learns of
    # each close only when it reads the EOF.
    for _ in range(12):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.close()
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST
    fresh_client_is_served(p, msgs)


def test_drop_in_the_middle_of_a_big_retr(alice):
    data = b"Subject: big\n\n" + b"0123456789 abcdefghij\n" * 400_000  # ~9 MB
    uid = alice.deliver(USER, data)
    for _ in range(3):
        c = alice.wait_unlocked(USER, PASSWORD)
        c.send("RETR 1\r\n")
        c.line()
        c.sock.recv(1000)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
    fresh_client_is_served(alice, [(uid, data)])


def test_client_that_never_reads(alice):
    # Pipelined RETRs while never reading: the server must not buffer without
    # bound or stall other clients; the other session is served meanwhile.
    data = b"Subject: big\n\n" + (b"x" * 1000 + b"\n") * 200
    uid = alice.deliver(USER, data)
    alice.add_user("bob@example.test", "bob-Secret-2")
    c = alice.session(USER, PASSWORD)
    try:
        c.send("RETR 1\r\n" * 30)
        with alice.session("bob@example.test", "bob-Secret-2") as b:
            assert b.stat() == (0, 0)
            b.ok("QUIT")
        # Now read it all: every reply is there, complete and in order.
        from harness import retr_wire

        for _ in range(30):
            assert c.line().startswith(b"+OK")
            assert c.multiline_raw(timeout=30) == retr_wire(data)
        c.ok("QUIT")
    finally:
        c.close()
    fresh_client_is_served(alice, [(uid, data)])


def test_many_concurrent_connections(mailbox):
    p, msgs = mailbox
    conns = []
    try:
        for _ in range(15):
            conns.append(Conn(p.port))
        for c in conns:
            c.ok("CAPA")
            c.multiline()
    finally:
        for c in conns:
            c.close()
    fresh_client_is_served(p, msgs)


def test_symlinks_and_other_non_messages_are_not_served(mailbox):
    p, msgs = mailbox
    md = p.maildir(USER)
    os.symlink("/etc/passwd", md / "new" / "1700000009.M9P9.evil")
    os.symlink("/etc/passwd", md / "cur" / "1700000010.M9P9.evil:2,")
    os.mkdir(md / "new" / "1700000011.M9P9.dir")
    (md / "new" / ".1700000012.hidden").write_bytes(b"Subject: hidden\n\nx\n")
    fifo = md / "new" / "1700000013.M9P9.fifo"
    os.mkfifo(fifo)
    with p.session(USER, PASSWORD) as c:
        assert [u for _, u in c.uidls()] == [u for u, _ in msgs]
        for i in range(1, 4):
            c.ok(f"RETR {i}")
            assert b"root:" not in b"".join(c.multiline())
        c.err("RETR 4")
        c.ok("QUIT")
    assert (md / "new" / "1700000009.M9P9.evil").is_symlink()
    fresh_client_is_served(p, msgs)


def test_message_removed_behind_the_servers_back(mailbox):
    p, msgs = mailbox
    with p.session(USER, PASSWORD) as c:
        assert len(c.list()) == 3
        gone = [f for f in p.files(USER) if msgs[1][0] in f][0]
        os.unlink(p.maildir(USER) / gone)  # between LIST and RETR
        reply = c.cmd("RETR 2")
        assert reply.startswith(b"-ERR"), reply
        c.ok("RETR 1")
        c.multiline()
        c.ok("DELE 2")  # already gone: deleting it is no error at QUIT
        reply = c.cmd("QUIT")
        assert reply.startswith(b"+OK"), reply
    fresh_client_is_served(p, [msgs[0], msgs[2]])


def test_zero_byte_and_oddly_named_files(alice):
    # Files another program may leave in a Maildir: each is either skipped
    # or served as the message it is; the session never breaks.
    md = alice.ensure_maildir(USER)
    plain = b"Subject: plain\n\nplain\n"
    alice.deliver(USER, plain, unique="1700000001.M1P1.plain")
    files = {
        "new/1700000002.M1P1.zero": b"",                          # empty, no sizes
        "cur/1700000003.M1P1.zero2,S=0,W=0:2,S": b"",              # empty, sized
        "new/1700000004.M1P1.bad,S=abc,W=-1": b"Subject: b\n\nb\n",  # unparsable sizes
        "new/1700000005 M1P1 spaces": b"Subject: s\n\ns\n",         # not a valid UIDL
        "new/" + "1700000006." + "L" * 200: b"Subject: l\n\nl\n",   # over 70 characters
        "new/1700000007.M1P1.info:2,": b"Subject: i\n\ni\n",         # info part in new/
        "new/1700000008.M1P1.lie,S=3,W=3": b"Subject: lie\n\nmore than three octets\n",
    }
    for name, data in files.items():
        (md / name).write_bytes(data)
    (md / "new" / ",S=1,W=1").write_bytes(b"x")  # no unique part: not a message
    os.mkfifo(md / "cur" / "1700000009.M1P1.fifo:2,")
    st = os.stat(md)
    for sub in ("new", "cur"):
        for n in os.listdir(md / sub):
            os.chown(md / sub / n, st.st_uid, st.st_gid)
    expected = [plain] + list(files.values())  # name order
    with alice.session(USER, PASSWORD) as c:
        uidls = c.uidls()
        assert len(uidls) == len(expected), uidls
        assert len({u for _, u in uidls}) == len(uidls), "a UIDL twice"
        for n, _ in uidls:
            c.ok(f"RETR {n}")
            got = c.multiline()
            assert got == expected[n - 1].split(b"\n")[:-1], (n, got)
        c.ok("QUIT")
    # Served again, with the same UIDLs.
    with alice.session(USER, PASSWORD) as c:
        assert c.uidls() == uidls
        c.ok("QUIT")


def test_message_swapped_for_a_fifo_symlink_or_directory_after_login(mailbox):
    # Between the scan at login and RETR someone puts something else under a
    # message's name. A FIFO must not block the worker (every session on it
    # would hang), a symlink is never followed, a directory is not a message.
    p, msgs = mailbox
    p.add_user("bob@example.test", "bob-Secret-2")
    md = p.maildir(USER)
    c = p.session(USER, PASSWORD)
    try:
        names = sorted(p.files(USER))
        os.unlink(md / names[0])
        os.mkfifo(md / names[0])
        os.unlink(md / names[1])
        os.symlink("/etc/passwd", md / names[1])
        os.unlink(md / names[2])
        os.mkdir(md / names[2])
        for n in (1, 2, 3):
            for cmd in (f"RETR {n}", f"TOP {n} 0"):
                start = time.monotonic()
                reply = c.cmd(cmd, timeout=10)
                assert reply.startswith(b"-ERR"), (cmd, reply)
                assert time.monotonic() - start < 5, f"{cmd} took {time.monotonic() - start:.1f}s"
        c.ok("NOOP")
        # Other sessions are served (on whichever worker they land).
        for _ in range(3):
            with p.session("bob@example.test", "bob-Secret-2") as b:
                assert b.stat() == (0, 0)
                b.ok("QUIT")
        c.ok("QUIT")
    finally:
        c.close()
    assert os.path.isfile("/etc/passwd") and (md / names[1]).is_symlink()


def test_http_request_to_the_pop3_port(mailbox):
    # A browser or a scanner: every line is refused, nothing is ever +OK
    # after the greeting, and a request with a long body is cut off by the
    # bad-command limit instead of being answered line by line forever.
    p, msgs = mailbox
    request = (b"POST /login HTTP/1.1\r\nHost: 127.0.0.1:110\r\nUser-Agent: scanner/1.0\r\n"
               b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 99999\r\n\r\n"
               + b"user=alice&pass=guess\r\n" * 200)
    with p.conn() as c:
        c.send(request)
        out = c.read_to_eof(timeout=20)
    lines = out.split(b"\r\n")
    assert lines[-1] == b"" and all(l.startswith(b"-ERR") for l in lines[:-1]), lines[:5]
    assert len(lines) - 1 < 100, f"{len(lines) - 1} replies: no bad-command limit"
    fresh_client_is_served(p, msgs)


@pytest.mark.parametrize("state", ["authorization", "transaction"])
def test_bad_command_limit_ends_the_session(mailbox, state):
    # A few bad commands are forgiven (test_unknown_commands_*); a stream of
    # them ends the session with -ERR, and nothing DELE'd is deleted.
    p, msgs = mailbox
    c = p.conn() if state == "authorization" else p.session(USER, PASSWORD)
    try:
        if state == "transaction":
            c.ok("DELE 1")
        replies = []
        for _ in range(100):
            try:
                replies.append(c.cmd("FROB"))
            except (Closed, BrokenPipeError, ConnectionResetError):
                break
        assert 3 < len(replies) < 100, f"{len(replies)} bad commands answered"
        assert all(r.startswith(b"-ERR") for r in replies), replies
        assert b"too many" in replies[-1], replies[-1]
        assert c.read_to_eof() == b""
    finally:
        c.close()
    fresh_client_is_served(p, msgs)
