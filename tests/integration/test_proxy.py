"""The PROXY protocol (HAProxy's specification, v1 and v2) from
`trusted_proxies`: the header's client address is the one the server uses
for logs, `pillar who`, "loopback counts as secure", the Received header and
max_connections_per_ip; not one byte after the header is lost, on a plain
port nor before an implicit TLS handshake; a connection with a bad header
is closed unanswered; the header from an untrusted address is only input.
The last tests put a real HAProxy (send-proxy, send-proxy-v2) in front.

The raw-socket tests write the headers byte for byte as the specification
(and HAProxy) does. The "proxy" is 127.0.0.5 (all of 127/8 is loopback): the
harness's own connections, from 127.0.0.1, stay ordinary clients."""

import ipaddress
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time

import pytest

from harness import PASSWORD, USER, Closed, Conn, SmtpConn, free_ports, wait_for

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
PROXY = "127.0.0.5"


def v1(src, dst="127.0.0.1", sport=40000, dport=110):
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src=None, dst="127.0.0.1", sport=40000, dport=110, tlvs=b""):
    """A v2 PROXY header; src=None makes a LOCAL one (a health check: the
    proxy speaks for itself)."""
    if src is None:
        return V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        fam, addrs = 0x11, s.packed + d.packed
    else:
        fam, addrs = 0x21, s.packed + ipaddress.IPv6Address(f"::ffff:{d}").packed
    body = addrs + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


def tlv(kind, value: bytes):
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def connect(port, source=PROXY):
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def pop3_via(p, header):
    s = connect(p.port)
    s.sendall(header)
    return Conn(None, sock=s)


def who(p):
    return json.loads(p.cli("who", "--json").stdout_text)


def connect_lines(p, proto):
    """Client addresses of the connections logged, but the harness's."""
    return [a for a in re.findall(rf"event=connect proto={proto} rip=(\S+)", p.log())
            if a != "127.0.0.1"]


@pytest.fixture
def proxied(make_pillar):
    """An instance that trusts 127.0.0.5 as a proxy, on every listener."""

    def make(**kw):
        p = make_pillar(trusted_proxies=PROXY, **kw)
        p.add_user(USER, PASSWORD)
        p.deliver(USER, b"Subject: hello\n\nhello\n")
        return p

    return make


def test_v1_header_gives_the_client_address(proxied):
    p = proxied()
    with pop3_via(p, v1("192.0.2.7")) as c:
        wait_for(lambda: any(s["address"] == "192.0.2.7" for s in who(p)), 10,
                 "pillar who to show the proxied address")
        # 192.0.2.7 is not loopback: USER/PASS without TLS is refused, as
        # for any remote client (plaintext_auth = tls), although the
        # connection itself comes from a loopback address.
        reply = c.cmd(f"USER {USER}")
        assert reply.startswith(b"-ERR [AUTH]") and b"TLS" in reply, reply
        c.ok("QUIT")
    assert connect_lines(p, "pop3") == ["192.0.2.7"]


def test_v2_ipv6_header_on_smtp_reaches_the_received_line(proxied):
    p = proxied(smtp=True)
    s = connect(p.smtp_port)
    # HAProxy adds TLVs (here ALPN and a unique id); they are skipped.
    s.sendall(v2("2001:db8::7", dport=25, tlvs=tlv(0x01, b"smtp") + tlv(0x05, b"id-1234")))
    with SmtpConn(None, sock=s) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@example.org>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: via a proxy\r\n\r\nbody\r\n.\r\n")
        assert c.reply().code == 250
        c.expect("QUIT", 221)
    assert connect_lines(p, "smtp") == ["2001:db8::7"]
    stored = [m for m in p.stored(USER).values() if b"via a proxy" in m]
    assert len(stored) == 1
    assert re.search(rb"^Received: from client\.example\.org \(\[2001:db8::7\]\)", stored[0], re.M), \
        stored[0][:400]


@pytest.mark.parametrize("trickle", [False, True])
def test_v2_header_of_the_largest_size_is_taken_whole(proxied, trickle):
    """The length field allows 65535 octets after the fixed part: a header
    that long (an unknown TLV of ~64 KiB) is read and skipped whole, sent
    at once or in pieces, and the command after it is the first input."""
    p = proxied()
    filler = 65535 - 12 - 3
    header = v2("192.0.2.9", tlvs=tlv(0xEE, bytes(range(256)) * (filler // 256) +
                                      b"x" * (filler % 256)))
    assert len(header) == 16 + 65535
    s = connect(p.port)
    if trickle:
        for i in range(0, len(header), 9000):
            s.sendall(header[i:i + 9000])
            time.sleep(0.05)
        s.sendall(b"CAPA\r\n")
    else:
        s.sendall(header + b"CAPA\r\n")
    with Conn(None, sock=s) as c:  # reads the greeting
        assert c.line().startswith(b"+OK"), "CAPA"
        assert b"TOP" in c.multiline()
        c.ok("QUIT")
    assert connect_lines(p, "pop3") == ["192.0.2.9"]


def test_v2_local_header_keeps_the_proxy_address(proxied):
    # A health check: the proxy speaks for itself, and the connection is
    # the proxy's own (loopback, so USER/PASS is allowed).
    p = proxied()
    with pop3_via(p, v2(None)) as c:
        c.login(USER, PASSWORD)
        assert c.stat()[0] == 1
        c.ok("QUIT")
    assert connect_lines(p, "pop3") == [PROXY]


def test_v1_unknown_keeps_the_proxy_address(proxied):
    p = proxied()
    with pop3_via(p, b"PROXY UNKNOWN\r\n") as c:
        c.login(USER, PASSWORD)
        c.ok("QUIT")
    assert connect_lines(p, "pop3") == [PROXY]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_commands_in_the_same_write_as_the_header_are_kept(proxied, version):
    # The header is consumed exactly: what follows it in the same segment
    # is the protocol's first input.
    p = proxied()
    header = v1("198.51.100.9") if version == "v1" else v2("198.51.100.9")
    s = connect(p.port)
    s.sendall(header + b"CAPA\r\nUSER " + USER.encode() + b"\r\n")
    with Conn(None, sock=s) as c:
        assert c.line().startswith(b"+OK")  # CAPA
        assert b"USER" not in c.multiline()  # not loopback, no TLS: no USER
        reply = c.line()
        assert reply.startswith(b"-ERR [AUTH]"), reply
        c.ok("QUIT")
    assert connect_lines(p, "pop3") == ["198.51.100.9"]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_header_trickled_a_byte_at_a_time(proxied, version):
    p = proxied(smtp=True)
    header = v1("192.0.2.33", dport=25) if version == "v1" else v2("192.0.2.33", dport=25)
    s = connect(p.smtp_port)
    for b in header:
        s.sendall(bytes([b]))
        time.sleep(0.01)
    with SmtpConn(None, sock=s) as c:
        c.ehlo()
        c.expect("QUIT", 221)
    assert connect_lines(p, "smtp") == ["192.0.2.33"]


def test_header_then_implicit_tls(proxied):
    # On POP3S the handshake starts right after the header: the first TLS
    # record must not have been swallowed with it.
    p = proxied(pop3s=True)
    s = connect(p.pop3s_port)
    s.sendall(v1("203.0.113.5", dport=995))
    with Conn(None, sock=s, tls=p.tls_context()) as c:
        c.login(USER, PASSWORD)
        assert c.stat()[0] == 1
        c.ok("QUIT")
    assert connect_lines(p, "pop3") == ["203.0.113.5"]


BAD_HEADERS = {
    "http-request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "pop3-command": b"CAPA\r\n",
    "v1-bad-address": b"PROXY TCP4 192.0.2.300 127.0.0.1 40000 110\r\n",
    "v1-family-mismatch": b"PROXY TCP4 2001:db8::1 127.0.0.1 40000 110\r\n",
    "v1-bad-port": b"PROXY TCP4 192.0.2.1 127.0.0.1 70000 110\r\n",
    "v1-too-long": b"PROXY TCP4 " + b"1" * 120 + b"\r\n",
    "v2-bad-version": V2_SIG + bytes([0x11, 0x11, 0, 12]) + b"\x00" * 12,
    "v2-short-addresses": V2_SIG + bytes([0x21, 0x11, 0, 4]) + b"\x7f\x00\x00\x01",
}


@pytest.mark.parametrize("name", sorted(BAD_HEADERS))
def test_bad_header_is_closed_unanswered(proxied, name):
    p = proxied()
    s = connect(p.port)
    try:
        s.sendall(BAD_HEADERS[name])
    except (BrokenPipeError, ConnectionResetError):
        pass
    got = b""
    try:
        while chunk := s.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    finally:
        s.close()
    assert got == b"", f"the server answered a connection without a valid header: {got!r}"
    wait_for(lambda: "reason=proxy-header" in p.log(), 10, "the refusal to be logged")
    assert not connect_lines(p, "pop3")
    # The next connection, with a good header, is served.
    with pop3_via(p, v1("192.0.2.8")) as c:
        c.ok("QUIT")


def worker_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_incomplete_header_costs_no_cpu_and_a_close_ends_it(proxied):
    # The first part of a header, then nothing: the worker waits without
    # spinning. Then the proxy closes: the connection is dropped at once,
    # not when the 10 s header timeout expires.
    p = proxied(workers=1)
    worker = p.workers("login")[0]
    s = connect(p.port)
    s.sendall(b"PROXY TCP4 192.0")
    time.sleep(0.2)
    before = worker_cpu_seconds(worker)
    time.sleep(1)
    used = worker_cpu_seconds(worker) - before
    s.close()
    assert used < 0.3, f"the worker used {used:.2f} s of CPU in 1 s waiting for a header"
    wait_for(lambda: "reason=proxy-header" in p.log(), 3, "the refusal to be logged")
    with pop3_via(p, v1("192.0.2.8")) as c:
        c.ok("QUIT")


def test_connection_limit_counts_the_proxied_address(proxied):
    p = proxied(max_connections_per_ip=2)
    held = [pop3_via(p, v1("192.0.2.50")) for _ in range(2)]
    try:
        s = connect(p.port)
        s.sendall(v1("192.0.2.50"))
        with Conn(None, sock=s, greet=False) as c:
            assert c.line() == b"-ERR [SYS/TEMP] too many connections from your address"
            with pytest.raises(Closed):
                c.line()
        # The proxy's other clients are not held to that address's limit.
        with pop3_via(p, v1("192.0.2.51")) as c:
            c.ok("QUIT")
    finally:
        for c in held:
            c.close()
    assert "event=refused reason=max-connections-per-ip proto=pop3 rip=192.0.2.50" in p.log()


def test_trusted_proxy_that_sends_no_header_is_cut_off_after_10_s(proxied):
    """A connection from a trusted proxy gets 10 s for its header; one that
    sends nothing (or part of one) is closed (reset) unanswered then."""
    p = proxied()
    silent = connect(p.port)
    partial = connect(p.port)
    partial.sendall(b"PROXY TCP4 192.0.2.1 ")
    t0 = time.monotonic()
    for s in (silent, partial):
        s.settimeout(20)
        try:
            assert s.recv(100) == b"", "something was answered"
        except ConnectionResetError:  # closed with a reset: as good
            pass
    waited = time.monotonic() - t0
    assert 9 <= waited < 15, waited
    assert p.log().count('reason=proxy-header proto=pop3 proxy=127.0.0.5 error="no header in '
                         'time"') == 2, p.log()[-1500:]
    for s in (silent, partial):
        s.close()


def test_login_penalty_counts_the_proxied_address(make_pillar):
    """Failed logins slow down the client that made them, as the PROXY
    header names it, not every client behind the same proxy."""
    p = make_pillar(trusted_proxies=PROXY, auth_failure_delay="300ms", login_timeout="20s")
    p.add_user(USER, PASSWORD)

    def failure(client):
        with pop3_via(p, v1(client)) as c:
            c.ok(f"USER {USER}")
            t0 = time.monotonic()
            reply = c.cmd("PASS wrong")
            assert reply.startswith(b"-ERR [AUTH]"), reply
            return time.monotonic() - t0

    # Loopback client addresses, so USER/PASS needs no TLS.
    delays = [failure("127.0.0.80") for _ in range(3)]
    assert delays[2] >= 1.2 * 0.9, delays  # 0.3, 0.6, 1.2 s
    other = failure("127.0.0.81")
    assert other < delays[2] / 2, (other, delays)
    with pop3_via(p, v1("127.0.0.81")) as c:
        c.login(USER, PASSWORD)
        c.ok("QUIT")


def test_header_from_an_untrusted_address_is_only_input(proxied):
    # 127.0.0.6 is not a trusted proxy: its header is a bad command, and
    # the address stays the connection's own.
    p = proxied()
    with Conn(None, sock=connect(p.port, source="127.0.0.6")) as c:
        reply = c.cmd(v1("192.0.2.7").rstrip(b"\r\n"))
        assert reply.startswith(b"-ERR"), reply
        c.login(USER, PASSWORD)
        assert any(s["address"] == "127.0.0.6" and s["user"] == USER for s in who(p)), who(p)
        c.ok("QUIT")
    assert connect_lines(p, "pop3") == ["127.0.0.6"]
    assert "192.0.2.7" not in p.log()


# -- a real HAProxy in front --------------------------------------------------------


def haproxy_bin():
    return shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy")
                                       else None)


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_behind_haproxy(proxied, tmp_path, send_proxy):
    haproxy = haproxy_bin()
    if haproxy is None:
        pytest.skip("haproxy is not installed (Debian package haproxy)")
    p = proxied(smtp=True)
    pop3_front, smtp_front = free_ports(2)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"""global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
listen pop3
    bind 127.0.0.1:{pop3_front}
    server pillar 127.0.0.1:{p.port} {send_proxy} source {PROXY}
listen smtp
    bind 127.0.0.1:{smtp_front}
    server pillar 127.0.0.1:{p.smtp_port} {send_proxy} source {PROXY}
""")
    log = open(tmp_path / "haproxy.log", "wb")
    hp = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdin=subprocess.DEVNULL,
                          stdout=log, stderr=subprocess.STDOUT)
    try:
        def listening():
            assert hp.poll() is None, (tmp_path / "haproxy.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", smtp_front), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(listening, 20, "haproxy to listen")
        # Clients on two loopback addresses: each is seen as itself, not as
        # HAProxy's address (and, being loopback, may use USER/PASS).
        with Conn(pop3_front, source="127.0.0.2") as c:
            c.login(USER, PASSWORD)
            wait_for(lambda: any(s["address"] == "127.0.0.2" and s["user"] == USER
                                 for s in who(p)), 10, "pillar who to show 127.0.0.2")
            assert c.stat()[0] == 1
            c.ok("QUIT")
        s = socket.create_connection(("127.0.0.1", smtp_front), timeout=10,
                                     source_address=("127.0.0.3", 0))
        with SmtpConn(None, sock=s) as c:
            c.ehlo()
            c.expect("MAIL FROM:<sender@example.org>", 250)
            c.expect(f"RCPT TO:<{USER}>", 250)
            c.expect("DATA", 354)
            c.send(b"Subject: through haproxy\r\n\r\nbody\r\n.\r\n")
            assert c.reply().code == 250
            c.expect("QUIT", 221)
    finally:
        hp.terminate()
        try:
            hp.wait(10)
        except subprocess.TimeoutExpired:
            hp.kill()
            hp.wait(5)
        log.close()
    assert connect_lines(p, "pop3") == ["127.0.0.2"]
    assert connect_lines(p, "smtp") == ["127.0.0.3"]
    stored = [m for m in p.stored(USER).values() if b"through haproxy" in m]
    assert len(stored) == 1 and b"([127.0.0.3])" in stored[0], stored
