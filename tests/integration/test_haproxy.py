"""Several Pillar servers behind a real HAProxy (DESIGN §7): two `pillar
serve` instances with different host names share one PostgreSQL directory (a
cluster of this module's own, pgcluster.py) and one mail root, and HAProxy
(Debian package `haproxy`, started by the test from a private config in a
temporary directory, loopback ports only, stopped at the end of the test)
hands them its connections with `send-proxy-v2`.

Everything runs on loopback, so the addresses are chosen to tell the parties
apart: clients connect to HAProxy from 127.0.0.5 (or 127.0.0.6), HAProxy
connects to the servers from 127.0.0.9 (`source` in its backends), and the
servers trust only 127.0.0.9/32 to send a PROXY header. A server that used
the socket's peer instead of the header would show 127.0.0.9.

HAProxy's frontends: `pop3` and `smtp` balance over both servers
(roundrobin; a connection a server refuses is dispatched to the other),
`pop3_a`, `pop3_b`, `smtp_a` and `smtp_b` reach one server each, so a test
knows where a connection lands.

Skipped when PostgreSQL's server programs or HAProxy are not installed.
"""

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness import (
    BOB,
    BOB_PASSWORD,
    IO_TIMEOUT,
    PASSWORD,
    USER,
    Closed,
    dot_stuff,
    Conn,
    POP3From,
    SmtpConn,
    free_ports,
    lf,
    message_lines,
    split_trace,
    wait_for,
)
from harness import pop3_login as harness_pop3_login
from pgcluster import Cluster, pg_bindir


def haproxy_bin():
    found = shutil.which("haproxy")
    if found:
        return found
    return "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None


HAPROXY = haproxy_bin()
pytestmark = [
    pytest.mark.skipif(pg_bindir() is None, reason="PostgreSQL server not installed"),
    pytest.mark.skipif(HAPROXY is None, reason="HAProxy not installed (Debian package haproxy)"),
]

CLIENT = "127.0.0.5"
OTHER_CLIENT = "127.0.0.6"
PROXY_SOURCE = "127.0.0.9"
A_HOST, B_HOST = "a.test", "b.test"


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    yield c
    c.destroy()


# --------------------------------------------------------------------------
# HAProxy


def listening(port):
    """Whether something listens on 127.0.0.1:port (read from
    /proc/net/tcp, so without making a connection)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        for row in f:
            fields = row.split()
            if fields[1] == want and fields[3] == "0A":
                return True
    return False


class HAProxy:
    """A private HAProxy in mode tcp: one frontend per entry of backends
    ({name: [(server name, port), ...]}) on a free loopback port
    (self.ports[name]), its servers reached from PROXY_SOURCE with a PROXY
    v2 header. start() runs it in the foreground (-db) until stop(); its
    log (one line per connection) is haproxy.log."""

    def __init__(self, directory, backends):
        self.dir = Path(directory)
        self.cfg = self.dir / "haproxy.cfg"
        self.log_path = self.dir / "haproxy.log"
        self.backends = backends
        self.proc = None
        self.ports = {}

    def start(self):
        for attempt in range(3):
            self.ports = dict(zip(self.backends, free_ports(len(self.backends))))
            self._write_config()
            r = subprocess.run([HAPROXY, "-c", "-f", str(self.cfg)], capture_output=True,
                               stdin=subprocess.DEVNULL, timeout=30)
            assert r.returncode == 0, f"haproxy -c: {r.stdout.decode()} {r.stderr.decode()}"
            if self._run():
                return
            # A port picked as free was taken meanwhile: pick others.
            assert attempt < 2 and "cannot bind" in self.log(), \
                f"haproxy exited with {self.proc.returncode}: {self.log()}"

    def _write_config(self):
        lines = [
            "global",
            "    maxconn 400",
            "    log stdout format raw local0 info",
            "defaults",
            "    mode tcp",
            "    log global",
            "    option tcplog",
            "    timeout connect 1s",
            "    timeout client 30s",
            "    timeout server 30s",
            # A server that refuses the connection (it was killed) is
            # tried again, then the connection goes to another one.
            "    retries 2",
            "    option redispatch 1",
        ]
        for name, servers in self.backends.items():
            lines += [f"frontend {name}",
                      f"    bind 127.0.0.1:{self.ports[name]}",
                      f"    default_backend {name}_servers",
                      f"backend {name}_servers",
                      "    balance roundrobin",
                      f"    source {PROXY_SOURCE}"]
            lines += [f"    server {s} 127.0.0.1:{port} send-proxy-v2" for s, port in servers]
        self.cfg.write_text("\n".join(lines) + "\n")

    def _run(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([HAPROXY, "-f", str(self.cfg), "-db"],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        wait_for(lambda: self.proc.poll() is not None
                 or all(listening(p) for p in self.ports.values()), 10, "HAProxy to listen")
        return self.proc.poll() is None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# --------------------------------------------------------------------------
# Clients that connect from a chosen loopback address


def smtp_from(port, source, greet=True):
    sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT,
                                    source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return SmtpConn(None, sock=sock, greet=greet)


def message(i, tag="m"):
    return (f"From: sender@example.org\r\nTo: {USER}\r\nSubject: {tag} {i}\r\n"
            f"Message-ID: <{tag}.{i}@example.org>\r\n\r\nbody {tag} {i}\r\n"
            f".a line that starts with a dot\r\n").encode()


def send(conn, rcpt, data):
    """One transaction on an SMTP connection after EHLO; the final reply."""
    conn.expect("MAIL FROM:<sender@example.org>", 250)
    conn.expect(f"RCPT TO:<{rcpt}>", 250)
    return conn.data(data)


def pop3_login(port, user, password, source=CLIENT):
    return harness_pop3_login(port, user, password, source)


def login_when_free(port, user, password, timeout=15, source=CLIENT):
    """Log in, retrying while the mailbox is [IN-USE] (a lock let go by a
    session that just ended, or by a server that died, goes a moment
    later). Any other answer fails the test."""
    deadline = time.monotonic() + timeout
    while True:
        p, err = pop3_login(port, user, password, source)
        if p is not None:
            return p
        assert b"[IN-USE]" in err, err
        assert time.monotonic() < deadline, f"{user} still [IN-USE] after {timeout}s"
        time.sleep(0.1)


def who(inst):
    return json.loads(inst.cli("who", "--json").stdout_text)


# --------------------------------------------------------------------------
# Two servers, one directory, one mail root, HAProxy in front


class Farm:
    def __init__(self, a, b, haproxy):
        self.a, self.b, self.haproxy = a, b, haproxy

    def port(self, frontend):
        return self.haproxy.ports[frontend]

    def pop3(self, frontend, source=CLIENT):
        return Conn(self.port(frontend), source=source)

    def smtp(self, frontend, source=CLIENT):
        return smtp_from(self.port(frontend), source)


@pytest.fixture
def make_farm(make_pillar, cluster, request):
    """Factory: make_farm(**settings) -> Farm. Servers A and B (host names
    a.test and b.test) with SMTP and POP3 listeners, the same PostgreSQL
    database and mail root, mailboxes alice@ and bob@example.test, both
    trusting PROXY_SOURCE; HAProxy in front of them."""
    dirs, proxies = [], []
    request.node._extra_logs = []

    def factory(**settings):
        url = cluster.new_url()
        common = {"trusted_proxies": f"{PROXY_SOURCE}/32", **settings}
        a = make_pillar(init_args=("--directory", url, "--hostname", A_HOST), smtp=True, **common)
        a.add_user(USER, PASSWORD)
        a.add_user(BOB, BOB_PASSWORD)
        b = make_pillar(init_args=("--directory", url, "--hostname", B_HOST), domain=False,
                        smtp=True, mail_root=str(a.mail_root), **common)
        assert a.mail_root == b.mail_root and a.port != b.port
        d = tempfile.mkdtemp(prefix="pillar-it-haproxy-")
        dirs.append(d)
        request.node._extra_logs.append(("haproxy log", Path(d) / "haproxy.log"))
        h = HAProxy(d, {
            "pop3": [("a", a.port), ("b", b.port)],
            "pop3_a": [("a", a.port)],
            "pop3_b": [("b", b.port)],
            "smtp": [("a", a.smtp_port), ("b", b.smtp_port)],
            "smtp_a": [("a", a.smtp_port)],
            "smtp_b": [("b", b.smtp_port)],
        })
        proxies.append(h)
        h.start()
        return Farm(a, b, h)

    yield factory

    for h in proxies:
        h.stop()
    if not os.environ.get("PILLAR_KEEP_TMP"):
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------


def test_delivered_through_a_fetched_through_b(make_farm):
    farm = make_farm()
    sent = {}
    for frontend, host, i in (("smtp_a", A_HOST, 1), ("smtp_b", B_HOST, 2)):
        with farm.smtp(frontend) as s:
            # The greeting names the server HAProxy picked.
            assert s.greeting.lines[0].startswith(host.encode() + b" "), s.greeting
            s.ehlo()
            send(s, USER, message(i))
            s.expect("QUIT", 221)
        sent[f"m.{i}@example.org"] = (host, message(i))

    # One Maildir, two writers: each server's unique names carry its host name.
    farm.a.wait_stored(USER, 2)
    files = farm.a.check_names(USER)
    assert len(files) == 2, files
    by_id, uniques = {}, set()
    for name, data in files.items():
        mid = re.search(rb"^Message-ID: <([^>]+)>", data, re.M).group(1).decode()
        host, original = sent[mid]
        unique = name.split(",")[0]
        assert unique.endswith("." + host), (name, host)
        _, received, rest = split_trace(data)
        assert f"by {host} (Pillar)".encode() in received, received
        assert f"([{CLIENT}])".encode() in received, received
        assert rest == lf(original)
        by_id[mid] = data
        uniques.add(unique)

    # Fetched through HAProxy on B: the same messages, byte for byte.
    p = POP3From(farm.port("pop3_b"), CLIENT)
    p.user(USER)
    p.pass_(PASSWORD)
    assert p.stat()[0] == 2
    listed = {}
    for line in p.uidl()[1]:
        n, uid = line.decode().split()
        listed[uid] = int(n)
    assert set(listed) == uniques
    for uid, n in listed.items():
        lines = p.retr(n)[1]
        mid = re.search(rb"^Message-ID: <([^>]+)>", b"\n".join(lines), re.M).group(1).decode()
        assert lines == message_lines(by_id[mid]), mid
    p.dele(listed[min(listed)])
    p.quit()

    # A sees what B did: one message left, the other one.
    p = login_when_free(farm.port("pop3_a"), USER, PASSWORD)
    assert p.stat()[0] == 1
    assert [l.decode().split()[1] for l in p.uidl()[1]] == [max(listed)]
    p.quit()


def test_second_login_through_the_other_server_gets_in_use(make_farm):
    farm = make_farm()
    p, err = pop3_login(farm.port("pop3_b"), USER, PASSWORD)
    assert err is None, err
    p.stat()
    q, err = pop3_login(farm.port("pop3_a"), USER, PASSWORD)
    assert q is None and err.startswith(b"-ERR [IN-USE]"), err
    # Through the balanced frontend: whichever server it lands on.
    for _ in range(2):
        q, err = pop3_login(farm.port("pop3"), USER, PASSWORD)
        assert q is None and err.startswith(b"-ERR [IN-USE]"), err
    # Another mailbox is not affected.
    q, err = pop3_login(farm.port("pop3_a"), BOB, BOB_PASSWORD)
    assert err is None, err
    q.quit()
    p.quit()
    p = login_when_free(farm.port("pop3_a"), USER, PASSWORD, timeout=10)
    p.quit()


def test_kill_9_of_the_server_holding_the_lock(make_farm):
    farm = make_farm()
    c = farm.pop3("pop3_a")
    c.login(USER, PASSWORD)
    c.stat()
    assert [s["user"] for s in who(farm.a)] == [USER]
    q, err = pop3_login(farm.port("pop3_b"), USER, PASSWORD)
    assert q is None and err.startswith(b"-ERR [IN-USE]"), err

    # Server A dies at once, master and workers, without a word.
    farm.a.expect_exit = True
    os.killpg(farm.a.proc.pid, signal.SIGKILL)
    farm.a.proc.wait(10)
    # HAProxy passes the end of the connection on to the client.
    assert c.read_to_eof(timeout=10) == b""
    c.close()

    # PostgreSQL ends the dead server's sessions and their advisory locks.
    p = login_when_free(farm.port("pop3_b"), USER, PASSWORD, timeout=15)
    assert p.stat()[0] == 0
    p.quit()
    # The balanced frontend keeps working: connections A refuses go to B.
    for _ in range(4):
        p = login_when_free(farm.port("pop3"), USER, PASSWORD, timeout=10)
        p.quit()


def test_postgresql_restart_under_load_through_haproxy(make_farm, cluster):
    farm = make_farm()
    accepted, temporary, problems = [], [], []
    stop = threading.Event()

    def sender(tag):
        i = 0
        while not stop.is_set():
            i += 1
            try:
                with farm.smtp("smtp") as s:
                    s.ehlo()
                    s.expect("MAIL FROM:<sender@example.org>", 250)
                    r = s.cmd(f"RCPT TO:<{USER}>")
                    if r.code != 250:
                        (temporary if r.code == 451 else problems).append((tag, i, r))
                        continue
                    s.expect("DATA", 354)
                    s.send(dot_stuff(message(i, tag)) + b".\r\n")
                    r = s.reply()
                    if r.code == 250:
                        accepted.append(f"{tag}.{i}@example.org")
                    else:
                        (temporary if r.code // 100 == 4 else problems).append((tag, i, r))
                    s.expect("QUIT", 221)
            except Exception as e:  # a dropped connection is a problem too
                problems.append((tag, i, repr(e)))
            time.sleep(0.01)

    def popper(source):
        while not stop.is_set():
            try:
                p, err = pop3_login(farm.port("pop3"), BOB, BOB_PASSWORD, source)
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

    threads = [threading.Thread(target=sender, args=("s1",)),
               threading.Thread(target=sender, args=("s2",)),
               threading.Thread(target=popper, args=(CLIENT,)),
               threading.Thread(target=popper, args=(OTHER_CLIENT,))]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        cluster.restart()
        time.sleep(0.5)
        # Down long enough that every client meets it.
        cluster.stop()
        try:
            n = len(temporary)
            time.sleep(1.0)
            during = temporary[n:]
        finally:
            cluster.start()
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not problems, problems[:10]
    assert accepted, "nothing was delivered"
    kinds = {e[0] if e[0] == "pop3" else "smtp" for e in during}
    assert kinds == {"pop3", "smtp"}, f"no temporary errors seen while PostgreSQL was down: {during}"
    # Every message acknowledged with 250 is there exactly once, and both
    # servers took some.
    farm.a.wait_stored(USER, len(accepted))
    ids, hosts = [], set()
    for data in farm.a.stored_list(USER):
        ids.append(re.search(rb"^Message-ID: <([^>]+)>", data, re.M).group(1).decode())
        hosts.add(re.search(rb"\tby (\S+) \(Pillar\)", data).group(1).decode())
    assert sorted(ids) == sorted(accepted), (len(ids), len(accepted))
    assert hosts == {A_HOST, B_HOST}, hosts
    for frontend in ("pop3_a", "pop3_b"):
        p = login_when_free(farm.port(frontend), USER, PASSWORD, timeout=20)
        assert p.stat()[0] == len(accepted)
        p.quit()


def test_logs_and_who_show_the_clients_address(make_farm):
    farm = make_farm()
    a = farm.a
    c = farm.pop3("pop3_a", source=CLIENT)
    c.login(USER, PASSWORD)
    s = farm.smtp("smtp_a", source=OTHER_CLIENT)
    s.ehlo()
    s.expect("MAIL FROM:<sender@example.org>", 250)
    try:
        sessions = who(a)
        assert sorted((x["protocol"].lower(), x["user"], x["address"]) for x in sessions) == \
            [("pop3", USER, CLIENT), ("smtp", "", OTHER_CLIENT)], sessions
        text = a.cli("who").stdout_text
        rows = [l.split() for l in text.splitlines()[1:]]
        assert any(USER in r and CLIENT in r for r in rows), text
        assert PROXY_SOURCE not in text, text
        s.expect(f"RCPT TO:<{BOB}>", 250)
        s.data(message(1))
        s.expect("QUIT", 221)
    finally:
        s.close()
    c.ok("QUIT")
    c.close()
    # A failed login on B, from the first client.
    q, err = pop3_login(farm.port("pop3_b"), USER, "wrong password")
    assert q is None and b"[AUTH]" in err, err

    _, received, _ = split_trace(a.wait_stored(BOB, 1)[0])
    assert f"([{OTHER_CLIENT}])".encode() in received, received

    def logged(inst, pattern):
        return re.search(pattern, inst.log(), re.M)

    wait_for(lambda: logged(a, rf"event=disconnect reason=quit user={re.escape(USER)} "),
             10, "the POP3 session's end in A's log")
    for pattern in (rf"event=connect proto=pop3 rip={re.escape(CLIENT)}$",
                    rf"event=login user={re.escape(USER)} rip={re.escape(CLIENT)} ",
                    rf"event=connect proto=smtp rip={re.escape(OTHER_CLIENT)}$"):
        assert logged(a, pattern), pattern
    wait_for(lambda: logged(farm.b, rf"auth failed user={re.escape(USER)} rip={re.escape(CLIENT)}$"),
             10, "the failed login in B's log")
    for inst in (a, farm.b):
        assert f"rip={PROXY_SOURCE}" not in inst.log()


def test_max_connections_per_ip_counts_the_clients_behind_haproxy(make_farm):
    farm = make_farm(max_connections_per_ip=2)
    held = [farm.pop3("pop3_a", source=CLIENT) for _ in range(2)]
    try:
        with Conn(farm.port("pop3_a"), source=CLIENT, greet=False) as c:
            reply = c.read_to_eof()
            assert reply == b"-ERR [SYS/TEMP] too many connections from your address\r\n", reply
        # Every connection reaches A from HAProxy's address; another client
        # is still welcome.
        with farm.pop3("pop3_a", source=OTHER_CLIENT) as c:
            c.ok("QUIT")
    finally:
        for c in held:
            c.close()
    assert re.search(rf"event=refused reason=max-connections-per-ip proto=pop3 rip={CLIENT}$",
                     farm.a.log(), re.M), farm.a.log()


def proxy_v2(src, dst, sport, dport):
    addresses = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses))
            + addresses)


def test_proxy_headers_only_from_trusted_addresses(make_pillar):
    """No HAProxy needed: raw headers straight to one server that trusts
    PROXY_SOURCE."""
    inst = make_pillar(smtp=True, trusted_proxies=f"{PROXY_SOURCE}/32")
    inst.add_user(USER, PASSWORD)
    # From an untrusted address a header is not read as one: POP3 sees a
    # bad command, the session goes on, the address stays the socket's.
    with Conn(inst.port) as c:
        c.err(f"PROXY TCP4 192.0.2.7 127.0.0.1 5555 {inst.port}")
        c.login(USER, PASSWORD)
        assert [(x["user"], x["address"]) for x in who(inst)] == [(USER, "127.0.0.1")]
        c.ok("QUIT")
    # SMTP, a v2 header: the server greeted first and the bytes are input.
    with inst.smtp() as s:
        s.send(proxy_v2("192.0.2.7", "127.0.0.1", 5555, inst.smtp_port))
        s.send(b"\r\nQUIT\r\n")
        try:
            while True:
                r = s.reply(timeout=5)
                assert r.code != 250, r
                if r.code == 221:
                    break
        except Closed:
            pass
    # From the trusted address, a header is required: the server says
    # nothing before it and closes on anything else.
    with Conn(inst.port, source=PROXY_SOURCE, greet=False) as c:
        assert not c.pending(0.3)
        c.send(b"USER " + USER.encode() + b"\r\n")
        assert c.read_to_eof(timeout=5) == b""
    with Conn(inst.port, source=PROXY_SOURCE, greet=False) as c:
        c.send(b"PROXY TCP4 192.0.2.7 nonsense\r\n")
        assert c.read_to_eof(timeout=5) == b""
    # And a good one is believed, for everything the address decides: a
    # client off loopback must not send a password in the clear.
    with Conn(inst.port, source=PROXY_SOURCE, greet=False) as c:
        c.send(proxy_v2("192.0.2.8", "127.0.0.1", 5556, inst.port))
        assert c.line().startswith(b"+OK")
        assert c.err("USER " + USER).startswith(b"-ERR [AUTH] plaintext authentication needs TLS")
        assert [(x["user"], x["address"]) for x in who(inst)] == [("", "192.0.2.8")]
        c.ok("QUIT")
    log = inst.log()
    assert "rip=192.0.2.7" not in log, log
    assert len(re.findall(rf"event=refused reason=proxy-header proto=pop3 proxy={PROXY_SOURCE} ",
                          log)) == 2, log
    assert re.search(r"event=connect proto=pop3 rip=192\.0\.2\.8$", log, re.M), log
