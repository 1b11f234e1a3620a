"""The integration-test harness: a Pillar instance and a raw POP3 client.

Every test gets its own Pillar instance: `pillar init` in a fresh directory,
the generated pillar.conf rewritten to listen on a free loopback port, and a
real `pillar serve --foreground` started from it. The server's stderr goes to
a log file that is attached to the report of any test that fails.

The helpers here talk to the server the way a client would (a raw socket
that checks every reply ends in CRLF) and put messages into Maildirs the way
a delivery agent would (write in tmp/, rename into new/ or cur/).
"""

import os
import poplib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PILLAR_BIN = os.environ.get("PILLAR_BIN") or str(REPO / "pillar")

# Bounds for everything that waits: generous, because a slow CI machine or a
# sanitizer build must not fail a test, yet finite, so a hang is a failure.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
IO_TIMEOUT = 15.0

# Values every test instance runs with unless the test says otherwise.
DEFAULT_SETTINGS = {
    "workers": "2",
    "login_timeout": "3s",
    "auth_failure_delay": "300ms",
}

DOMAIN = "example.test"


# --------------------------------------------------------------------------
# Message helpers: what the server must send for a given file.


def crlf(data: bytes) -> bytes:
    """Every LF not already preceded by CR becomes CRLF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def vsize(data: bytes) -> int:
    """The W= size: octets RETR sends before dot-stuffing."""
    return len(crlf(data))


def message_lines(data: bytes):
    """Lines of the message after CRLF conversion, without terminators.
    A last line without a newline is still a line."""
    c = crlf(data)
    if not c:
        return []
    parts = c.split(b"\r\n")
    if c.endswith(b"\r\n"):
        parts = parts[:-1]
    return parts


def stuffed_body(lines) -> bytes:
    """Multi-line response body for these lines (RFC 1939 §3), including the
    terminating ".\\r\\n"."""
    out = []
    for line in lines:
        if line.startswith(b"."):
            line = b"." + line
        out.append(line + b"\r\n")
    out.append(b".\r\n")
    return b"".join(out)


def retr_wire(data: bytes) -> bytes:
    return stuffed_body(message_lines(data))


def top_wire(data: bytes, n: int) -> bytes:
    lines = message_lines(data)
    try:
        blank = lines.index(b"")
    except ValueError:
        return stuffed_body(lines)  # all header: the whole message
    return stuffed_body(lines[: blank + 1 + n])


# --------------------------------------------------------------------------
# A raw POP3 connection.


class Closed(Exception):
    """The server closed the connection while a reply was expected."""


class Conn:
    """A plain socket to the server with strict CRLF line reading.

    line() returns one reply line without its CRLF; a reply that ends in a bare
    LF never completes and so fails the test with a timeout."""

    def __init__(self, port, timeout=IO_TIMEOUT, greet=True, source=None, tls=None,
                 server_hostname="localhost", sock=None):
        # source: a client address such as "127.0.0.2" (all of 127/8 is
        # loopback), to look like a different client host.
        # tls: an ssl.SSLContext to handshake with right after connecting
        # (implicit TLS, the pop3s port), before the greeting is read.
        # sock: an already connected socket to use instead of connecting.
        if sock is None:
            sock = socket.create_connection(
                ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
            )
        self.sock = sock
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.greeting = None
        if tls is not None:
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname=server_hostname)
            except BaseException:
                self.sock.close()
                raise
        if greet:
            self.greeting = self.line()
            assert self.greeting.startswith(b"+OK"), self.greeting

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Read more into buf. False at EOF (or reset)."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no reply from server in time; have %r" % bytes(self.buf[-200:]))
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(262144)
        except socket.timeout:
            raise TimeoutError("no reply from server in time; have %r" % bytes(self.buf[-200:]))
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def line(self, timeout=None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        start = 0
        while True:
            i = self.buf.find(b"\r\n", start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return out
            start = max(0, len(self.buf) - 1)
            if not self._fill(deadline):
                raise Closed("connection closed; unterminated data %r" % bytes(self.buf[:200]))

    def multiline_raw(self, timeout=None) -> bytes:
        """The body of a multi-line reply exactly as sent, up to and including
        the terminating ".\\r\\n"."""
        deadline = time.monotonic() + (timeout or self.timeout)
        pos = 0  # start of the current line in buf
        while True:
            i = self.buf.find(b"\r\n", pos)
            if i < 0:
                if not self._fill(deadline):
                    raise Closed("connection closed inside a multi-line reply")
                continue
            if i == pos + 1 and self.buf[pos : pos + 1] == b".":
                out = bytes(self.buf[: i + 2])
                del self.buf[: i + 2]
                return out
            pos = i + 2

    def multiline(self, timeout=None):
        """Body lines of a multi-line reply, dot-unstuffed, without CRLF."""
        raw = self.multiline_raw(timeout)
        lines = raw[:-3].split(b"\r\n")[:-1] if raw != b".\r\n" else []
        return [l[1:] if l.startswith(b".") else l for l in lines]

    def cmd(self, line, timeout=None) -> bytes:
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.line(timeout)

    def ok(self, line, timeout=None) -> bytes:
        reply = self.cmd(line, timeout)
        assert reply.startswith(b"+OK"), (line, reply)
        return reply

    def err(self, line, timeout=None) -> bytes:
        reply = self.cmd(line, timeout)
        assert reply.startswith(b"-ERR"), (line, reply)
        return reply

    def login(self, user, password):
        self.ok("USER " + user)
        self.ok("PASS " + password)

    def stat(self):
        reply = self.ok("STAT")
        m = re.fullmatch(rb"\+OK (\d+) (\d+)(?: .*)?", reply)
        assert m, reply
        return int(m.group(1)), int(m.group(2))

    def uidls(self):
        self.ok("UIDL")
        out = []
        for line in self.multiline():
            m = re.fullmatch(rb"(\d+) ([\x21-\x7e]{1,70})", line)
            assert m, line
            out.append((int(m.group(1)), m.group(2).decode()))
        return out

    def list(self):
        self.ok("LIST")
        out = []
        for line in self.multiline():
            m = re.fullmatch(rb"(\d+) (\d+)", line)
            assert m, line
            out.append((int(m.group(1)), int(m.group(2))))
        return out

    def read_to_eof(self, timeout=None) -> bytes:
        """Everything the server sends until it closes; fails on timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while self._fill(deadline):
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def starttls(self, context, server_hostname="localhost"):
        """Handshake on this connection (after +OK to STLS or 220 to
        STARTTLS). Nothing may have arrived after that reply: bytes the
        server sent in plaintext past it would be an injection hole."""
        assert not self.buf, f"plaintext after the STLS/STARTTLS reply: {bytes(self.buf)!r}"
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        return self.sock

    def pending(self, wait=0.0) -> bool:
        """Whether any reply byte (or EOF) is available within `wait` seconds."""
        if self.buf or self.eof:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        import select

        r, _, _ = select.select([self.sock], [], [], wait)
        return bool(r)


# --------------------------------------------------------------------------
# A raw SMTP / LMTP connection.

# RFC 3463 enhanced status code at the start of a reply's text (RFC 2034 §4).
ENHANCED_RE = re.compile(rb"^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")


class Reply:
    """One SMTP reply: the code and the text of each line (without "NNN-")."""

    def __init__(self, code, lines):
        self.code = code
        self.lines = lines

    @property
    def text(self) -> bytes:
        return b"\n".join(self.lines)

    @property
    def enhanced(self):
        """The enhanced status code of the first line ("2.1.0"), or None."""
        m = ENHANCED_RE.match(self.lines[0]) if self.lines else None
        return m.group(0).strip().decode() if m else None

    def __repr__(self):
        return f"Reply({self.code}, {self.lines!r})"


class SmtpConn(Conn):
    """A plain SMTP or LMTP connection with strict reply parsing: every line
    must end in CRLF and look like "NNN-text" or "NNN text", and all the lines
    of one reply must carry the same code.

    target: a TCP port on 127.0.0.1, or the path of a unix socket."""

    def __init__(self, target, timeout=IO_TIMEOUT, greet=True, sock=None):
        if sock is not None:
            self.sock = sock
            self.sock.settimeout(timeout)
        elif isinstance(target, int):
            self.sock = socket.create_connection(("127.0.0.1", target), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(str(target))
            except OSError:
                self.sock.close()
                raise
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.greeting = None
        if greet:
            self.greeting = self.reply()
            assert self.greeting.code == 220, self.greeting

    def reply(self, timeout=None) -> Reply:
        code, lines = None, []
        while True:
            line = self.line(timeout)
            m = re.fullmatch(rb"(\d{3})([ -])(.*)", line, re.S)
            assert m, f"malformed reply line {line!r}"
            if code is None:
                code = int(m.group(1))
            assert int(m.group(1)) == code, f"reply code changed inside a reply: {lines!r} then {line!r}"
            lines.append(m.group(3))
            if m.group(2) == b" ":
                return Reply(code, lines)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None) -> Reply:
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply(timeout)

    def expect(self, line, code, enhanced=None, timeout=None) -> Reply:
        """Send a command; its reply must have this code (and enhanced code,
        when given; a prefix like "5.1." is allowed)."""
        r = self.cmd(line, timeout)
        assert r.code == code, (line, r)
        if enhanced is not None:
            assert r.enhanced and r.enhanced.startswith(enhanced), (line, r)
        return r

    def ehlo(self, name="client.example.org", verb="EHLO") -> Reply:
        return self.expect(f"{verb} {name}", 250)

    def keywords(self, reply: Reply):
        """The EHLO/LHLO keywords of a reply: {"SIZE": ["1024"], ...}."""
        out = {}
        for line in reply.lines[1:]:
            words = line.decode().split()
            if words:
                out[words[0].upper()] = words[1:]
        return out

    def data(self, message: bytes, code=250, enhanced=None, timeout=None) -> Reply:
        """DATA with the message dot-stuffed and terminated here; message is
        sent as given (line ends included), so it must use CRLF."""
        self.expect("DATA", 354)
        self.send(dot_stuff(message) + b".\r\n")
        r = self.reply(timeout)
        assert r.code == code, r
        if enhanced is not None:
            assert r.enhanced and r.enhanced.startswith(enhanced), r
        return r


def dot_stuff(message: bytes) -> bytes:
    """What a client sends for a message in DATA, before the final ".CRLF"
    (RFC 5321 §4.5.2); message must use CRLF line ends."""
    if message and not message.endswith(b"\r\n"):
        message += b"\r\n"
    out = re.sub(rb"(?m)^\.", b"..", message)
    return out


def lf(data: bytes) -> bytes:
    """CRLF line ends to LF, as the server stores a message."""
    return data.replace(b"\r\n", b"\n")


def split_trace(stored: bytes):
    """Split a stored message into (return_path, received, rest): the first
    header must be Return-Path:, the second Received: (with any folded
    continuation lines). Fails the test when they are not there."""
    m = re.match(rb"Return-Path: ?([^\n]*)\n", stored)
    assert m, f"stored message does not start with Return-Path: {stored[:200]!r}"
    return_path = m.group(1)
    pos = m.end()
    m = re.match(rb"Received: ?[^\n]*\n(?:[ \t][^\n]*\n)*", stored[pos:])
    assert m, f"no Received: header after Return-Path: {stored[:400]!r}"
    received = stored[pos : pos + m.end()]
    return return_path, received, stored[pos + m.end() :]


NAME_RE = re.compile(r"^([\x21-\x7e]{1,70}?),S=(\d+),W=(\d+)(?::2,[A-Za-z]*)?$")


# --------------------------------------------------------------------------
# One Pillar instance.


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n):
    """n distinct free loopback ports (all bound at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------
# TLS certificates for test instances.


def make_cert(directory, name="server", cn="localhost", serial=None, org=None, days=30,
              san="DNS:localhost,IP:127.0.0.1"):
    """A fresh self-signed certificate (RSA 2048) valid for the names in san
    (localhost and 127.0.0.1 by default), and its unencrypted key, made with
    the openssl CLI. Returns (cert_path, key_path)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subject = f"/CN={cn}" + (f"/O={org}" if org else "")
    cmd = [tool("openssl") or "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
           "-subj", subject, "-addext", f"subjectAltName={san}",
           "-days", str(days), "-keyout", str(key), "-out", str(cert)]
    if serial is not None:
        cmd += ["-set_serial", str(serial)]
    r = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 0, f"openssl req failed: {r.stderr.decode(errors='replace')}"
    return cert, key


_shared_cert = None


def shared_cert():
    """One certificate made once per test run (making RSA keys takes time),
    copied into each instance that wants TLS. Returns (cert_path, key_path)."""
    global _shared_cert
    # Made again if something removed it meanwhile (a cleanup of /tmp).
    if _shared_cert is None or not all(Path(f).exists() for f in _shared_cert):
        import atexit

        d = Path(tempfile.mkdtemp(prefix="pillar-it-cert-"))
        atexit.register(shutil.rmtree, d, True)
        _shared_cert = make_cert(d, serial=1)
    return _shared_cert


def tls_client_context(cafile, version=None):
    """A client context that verifies the server against cafile (the test
    certificate); version pins one ssl.TLSVersion."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


def children_of(pid):
    """PIDs whose parent is pid (from /proc, so no ps parsing)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ..." — comm may contain spaces/parens.
        rest = stat[stat.rfind(b")") + 2 :].split()
        if int(rest[1]) == pid and rest[0] != b"Z":
            out.append(int(entry))
    return sorted(out)


def comm_of(pid):
    """The process's name (/proc/PID/comm), "" when it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def status_of(pid):
    """/proc/PID/status as a dict (pid may also be "PID/task/TID")."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def socket_inodes(pid):
    """The sockets pid holds open, as their /proc link names ("socket:[N]")."""
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target)
    return out


# The name the auth process gives itself (prctl PR_SET_NAME).
AUTH_COMM = "pillar-auth"


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def set_key(conf: Path, key, value) -> int:
    """Set `key = value` in a config file: the first line of the key is
    replaced and any further ones (list keys) removed; a key not present is
    appended. Returns the 1-based line number of the key's line."""
    lines = conf.read_text().splitlines()
    pat = re.compile(rf"^\s*{re.escape(key)}\s*=")
    out, lineno = [], None
    for line in lines:
        if pat.match(line):
            if lineno is None:
                out.append(f"{key} = {value}")
                lineno = len(out)
            continue
        out.append(line)
    if lineno is None:
        out.append(f"{key} = {value}")
        lineno = len(out)
    conf.write_text("\n".join(out) + "\n")
    return lineno


def unset_key(conf: Path, key):
    """Remove every `key = ...` line from a config file."""
    pat = re.compile(rf"^\s*{re.escape(key)}\s*=")
    lines = [l for l in conf.read_text().splitlines() if not pat.match(l)]
    conf.write_text("\n".join(lines) + "\n")


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Pillar:
    def __init__(self, base: Path, settings: dict, init_args=(), smtp=False, lmtp=False,
                 tls=False, pop3s=False):
        """smtp: also listen for SMTP on a free loopback port (self.smtp_port).
        lmtp: True for LMTP on a free loopback port (self.lmtp_port), "unix"
        for LMTP on a unix socket (self.lmtp_path), "both" for the two.
        tls: set tls_cert and tls_key to a copy of the test certificate
        (self.cert, self.key; see shared_cert()), which the test can replace.
        pop3s: also listen for POP3 over implicit TLS on a free loopback port
        (self.pop3s_port); implies tls."""
        self.base = base
        self.dir = base / "inst"
        self.conf = self.dir / "pillar.conf"
        self.log_path = base / "pillar.log"
        self.proc = None
        self.expect_exit = False
        self.problems = []  # found at teardown
        self.seq = 0
        self.port, smtp_port, lmtp_port, pop3s_port = free_ports(4)
        self.smtp_port = smtp_port if smtp else None
        self.lmtp_port = lmtp_port if lmtp in (True, "both") else None
        self.pop3s_port = pop3s_port if pop3s else None
        # Listeners a test adds with add_listener(): (key, value) pairs.
        self.extra_listeners = []
        # For `pillar serve` only, set before start(): extra environment
        # variables (e.g. LD_PRELOAD of a fault-injection shim) and resource
        # limits ({resource.RLIMIT_NOFILE: (64, 64)}).
        self.env = {}
        self.rlimits = {}
        self.cert = self.key = None
        if tls or pop3s:
            tls_dir = base / "tls"
            tls_dir.mkdir(mode=0o755)
            self.cert, self.key = tls_dir / "cert.pem", tls_dir / "key.pem"
            cert, key = shared_cert()
            shutil.copyfile(cert, self.cert)
            shutil.copyfile(key, self.key)
            os.chmod(self.key, 0o600)
        # Ports chosen here may be re-chosen when one turns out to be taken.
        self.own_ports = "pop3_listen" not in settings
        self.lmtp_path = str(base / "lmtp.sock") if lmtp in ("unix", "both") else None
        # PILLAR_TEST_DIRECTORY=postgresql: every instance keeps its
        # directory in a database of its own (pgcluster.py).
        if os.environ.get("PILLAR_TEST_DIRECTORY") == "postgresql" and "--directory" not in init_args:
            from pgcluster import shared_cluster

            init_args = (*init_args, "--directory", shared_cluster().new_url())
        r = subprocess.run(
            [PILLAR_BIN, "init", str(self.dir), *init_args],
            capture_output=True,
            timeout=120,
        )
        assert r.returncode == 0, f"pillar init failed: {r.stderr.decode(errors='replace')}"
        settings = dict(settings)
        settings.setdefault("pop3_listen", f"127.0.0.1:{self.port}")
        # The listeners `pillar init` writes (fixed demo ports) are replaced by
        # free ports, or removed when the test does not ask for them.
        unset_key(self.conf, "smtp_listen")
        unset_key(self.conf, "lmtp_listen")
        unset_key(self.conf, "pop3s_listen")
        if self.cert:
            settings.setdefault("tls_cert", str(self.cert))
            settings.setdefault("tls_key", str(self.key))
        self.configure(**settings)
        if self.pop3s_port:
            set_key(self.conf, "pop3s_listen", f"127.0.0.1:{self.pop3s_port}")
        if self.smtp_port:
            set_key(self.conf, "smtp_listen", f"127.0.0.1:{self.smtp_port}")
        lmtp_specs = []
        if self.lmtp_port:
            lmtp_specs.append(f"127.0.0.1:{self.lmtp_port}")
        if self.lmtp_path:
            lmtp_specs.append(f"unix:{self.lmtp_path}")
        if lmtp_specs:
            set_key(self.conf, "lmtp_listen", lmtp_specs[0])
            for spec in lmtp_specs[1:]:
                with open(self.conf, "a") as f:
                    f.write(f"lmtp_listen = {spec}\n")

    # -- config -----------------------------------------------------------

    def configure(self, **settings):
        """Set keys in pillar.conf (see set_key)."""
        for key, value in settings.items():
            set_key(self.conf, key, value)

    def conf_value(self, key):
        for line in self.conf.read_text().splitlines():
            m = re.match(rf"^\s*{re.escape(key)}\s*=\s*(.*?)\s*$", line)
            if m:
                return m.group(1)
        return None

    @property
    def mail_root(self) -> Path:
        return Path(self.conf_value("mail_root") or (self.conf_value("state_dir") + "/mail"))

    # -- admin commands ---------------------------------------------------

    def cli(self, *args, input=None, check=True, env=None, conf=True):
        """Run `pillar <subcommand words> -c CONF <rest>`."""
        args = [str(a) for a in args]
        nwords = 2 if args and args[0] in ("domain", "user", "alias") else 1
        cmd = [PILLAR_BIN, *args[:nwords]]
        if conf:
            cmd += ["-c", str(self.conf)]
        cmd += args[nwords:]
        r = subprocess.run(
            cmd,
            input=input.encode() if isinstance(input, str) else input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            timeout=60,
            env=env,
        )
        r.stdout_text = r.stdout.decode(errors="replace")
        r.stderr_text = r.stderr.decode(errors="replace")
        if check:
            assert r.returncode == 0, f"{cmd} failed ({r.returncode}): {r.stderr_text}"
        return r

    def add_domain(self, domain=DOMAIN):
        self.cli("domain", "add", domain)

    def add_user(self, address, password):
        self.cli("user", "add", address, "--password-stdin", input=password + "\n")

    # -- mail store -------------------------------------------------------

    def maildir(self, address) -> Path:
        local, domain = address.split("@")
        return self.mail_root / domain / local

    def _owner(self):
        st = os.stat(self.mail_root)
        return st.st_uid, st.st_gid

    def ensure_maildir(self, address) -> Path:
        md = self.maildir(address)
        uid, gid = self._owner()
        for d in (md.parent, md, md / "tmp", md / "new", md / "cur"):
            if not d.exists():
                d.mkdir(mode=0o700)
                os.chown(d, uid, gid)
        return md

    def next_unique(self):
        self.seq += 1
        return f"{1700000000 + self.seq}.M{self.seq}P{os.getpid()}.test"

    def deliver(self, address, data: bytes, sizes=True, subdir="new", unique=None, name=None):
        """Put a message file into the mailbox like a delivery agent would.
        Returns the unique part of its name (the expected UIDL)."""
        md = self.ensure_maildir(address)
        if unique is None:
            unique = self.next_unique()
        if name is None:
            name = unique
            if sizes:
                name += f",S={len(data)},W={vsize(data)}"
            if subdir == "cur":
                name += ":2,"
        uid, gid = self._owner()
        tmp = md / "tmp" / name
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o600)
        os.chown(tmp, uid, gid)
        os.rename(tmp, md / subdir / name)
        return unique

    def files(self, address):
        """Message file names currently in new/ and cur/."""
        md = self.maildir(address)
        out = []
        for sub in ("new", "cur"):
            if (md / sub).is_dir():
                out += [f"{sub}/{n}" for n in os.listdir(md / sub)]
        return sorted(out)

    def stored(self, address, sub="new"):
        """{file name: contents} of the messages in new/ (or cur/)."""
        d = self.maildir(address) / sub
        out = {}
        if d.is_dir():
            for n in os.listdir(d):
                try:
                    out[n] = (d / n).read_bytes()
                except FileNotFoundError:
                    pass
        return out

    def stored_list(self, address):
        """Contents of the messages in new/, oldest name first."""
        return [v for _, v in sorted(self.stored(address).items())]

    def check_names(self, address):
        """Every file in new/ is named <unique>,S=<size>,W=<vsize> with sizes
        that match its contents; returns {name: contents}."""
        files = self.stored(address)
        for name, data in files.items():
            m = NAME_RE.match(name)
            assert m, f"message file name without ,S= and ,W=: {name}"
            assert int(m.group(2)) == len(data), (name, len(data))
            assert int(m.group(3)) == vsize(data), (name, vsize(data))
        return files

    def wait_stored(self, address, n, timeout=20):
        """Wait until new/ holds at least n messages; returns them."""
        wait_for(lambda: len(self.stored(address)) >= n, timeout,
                 f"{n} message(s) in the mailbox of {address}")
        return self.stored_list(address)

    def partial_files(self):
        """Files in the delivery spool and in any mailbox's tmp/: what a
        failed or abandoned delivery must not leave behind."""
        out = []
        root = self.mail_root
        spool = root / ".spool"
        if spool.is_dir():
            out += [str(spool / n) for n in os.listdir(spool)]
        if root.is_dir():
            for dom in os.listdir(root):
                if dom.startswith(".") or not (root / dom).is_dir():
                    continue
                for local in os.listdir(root / dom):
                    tmp = root / dom / local / "tmp"
                    if tmp.is_dir():
                        out += [str(tmp / n) for n in os.listdir(tmp)]
        return sorted(out)

    def uniques_on_disk(self, address):
        return sorted(re.split(r"[,:]", f.split("/", 1)[1])[0] for f in self.files(address))

    # -- server -----------------------------------------------------------

    def add_listener(self, key, value):
        """One more listener (e.g. pop3_listen on a non-loopback address),
        kept when the start is retried on other ports. Call before start()."""
        self.extra_listeners.append((key, value))
        with open(self.conf, "a") as f:
            f.write(f"{key} = {value}\n")

    def _write_listeners(self):
        set_key(self.conf, "pop3_listen", f"127.0.0.1:{self.port}")
        unset_key(self.conf, "smtp_listen")
        unset_key(self.conf, "lmtp_listen")
        unset_key(self.conf, "pop3s_listen")
        specs = []
        if self.pop3s_port:
            specs.append(("pop3s_listen", f"127.0.0.1:{self.pop3s_port}"))
        if self.smtp_port:
            specs.append(("smtp_listen", f"127.0.0.1:{self.smtp_port}"))
        if self.lmtp_port:
            specs.append(("lmtp_listen", f"127.0.0.1:{self.lmtp_port}"))
        if self.lmtp_path:
            specs.append(("lmtp_listen", f"unix:{self.lmtp_path}"))
        with open(self.conf, "a") as f:
            for key, value in specs + self.extra_listeners:
                f.write(f"{key} = {value}\n")

    def start(self, timeout=START_TIMEOUT):
        """Start `pillar serve` and wait until every listener answers. A
        free port picked by the harness can be taken by someone else before
        the server binds it; then new ports are picked and the start retried."""
        for attempt in range(3):
            log_size = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                return self._start(timeout)
            except AssertionError:
                if self.proc.poll() is None or not self.own_ports or attempt == 2:
                    raise
                with open(self.log_path, "rb") as f:
                    f.seek(log_size)
                    if b"Address already in use" not in f.read():
                        raise
            self.port, smtp_port, lmtp_port, pop3s_port = free_ports(4)
            self.smtp_port = smtp_port if self.smtp_port else None
            self.lmtp_port = lmtp_port if self.lmtp_port else None
            self.pop3s_port = pop3s_port if self.pop3s_port else None
            self._write_listeners()

    def _start(self, timeout):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.expect_exit = False
        log = open(self.log_path, "ab")
        log_start = log.tell()
        rlimits = dict(self.rlimits)

        def limits():
            import resource

            for which, value in rlimits.items():
                resource.setrlimit(which, value)

        self.proc = subprocess.Popen(
            [PILLAR_BIN, "serve", "-c", str(self.conf), "--foreground"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, **self.env} if self.env else None,
            preexec_fn=limits if rlimits else None,
        )
        log.close()
        deadline = time.monotonic() + timeout
        # Until this server says it has started, a listener that answers may
        # be another one's that took the port first.
        started = f"started pid={self.proc.pid} ".encode()
        while started not in self.log_path.read_bytes()[log_start:]:
            if self.proc.poll() is not None:
                raise AssertionError(f"pillar serve exited with {self.proc.returncode} at start")
            if time.monotonic() > deadline:
                raise AssertionError("pillar serve did not log that it started in time")
            time.sleep(0.02)
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"pillar serve exited with {self.proc.returncode} at start")
            try:
                c = Conn(self.port, timeout=2)
                c.send(b"QUIT\r\n")
                c.close()
                break
            except (OSError, Closed, TimeoutError, AssertionError):
                if time.monotonic() > deadline:
                    raise AssertionError("pillar serve did not accept POP3 connections in time")
                time.sleep(0.05)
        # Every other listener the test asked for must answer too.
        while self.pop3s_port:
            if self.proc.poll() is not None:
                raise AssertionError(f"pillar serve exited with {self.proc.returncode} at start")
            try:
                c = Conn(self.pop3s_port, timeout=2, tls=self.tls_context())
                c.send(b"QUIT\r\n")
                c.close()
                break
            except (OSError, Closed, TimeoutError, AssertionError):
                if time.monotonic() > deadline:
                    raise AssertionError("pillar serve did not greet POP3S connections in time")
                time.sleep(0.05)
        for what, target in (("SMTP", self.smtp_port), ("LMTP", self.lmtp_port),
                             ("LMTP (unix)", self.lmtp_path)):
            if not target:
                continue
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"pillar serve exited with {self.proc.returncode} at start")
                try:
                    c = SmtpConn(target, timeout=2)
                    c.send(b"QUIT\r\n")
                    c.close()
                    break
                except (OSError, Closed, TimeoutError, AssertionError):
                    if time.monotonic() > deadline:
                        raise AssertionError(f"pillar serve did not greet {what} connections in time")
                    time.sleep(0.05)
        # Every worker has dropped its privileges and named itself (tests
        # look for them by name), or the time is up.
        n = int(self.conf_value("workers") or 0)
        while time.monotonic() < deadline and self.proc.poll() is None:
            names = [comm_of(pid) for pid in children_of(self.proc.pid)]
            if (n and names.count("pillar-login") == n and names.count("pillar-mail") == n
                    and all(name.startswith("pillar-") for name in names)):
                break
            time.sleep(0.02)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def children(self):
        """Every process the master started: workers and auth processes."""
        return children_of(self.proc.pid)

    def workers(self, role=None):
        """The worker processes (the master's children but the auth
        processes); with role ("login" or "mail") only those of that kind."""
        pids = [p for p in children_of(self.proc.pid) if comm_of(p) != AUTH_COMM]
        if role is None:
            return pids
        return [p for p in pids if comm_of(p) == f"pillar-{role}"]

    def auth_processes(self):
        """The auth processes (one per generation; more while old ones
        drain after a reload)."""
        return [p for p in children_of(self.proc.pid) if comm_of(p) == AUTH_COMM]

    def holder_of(self, conn: Conn):
        """The server process (a child of the master) that holds the server
        end of this client connection, found through /proc/net/tcp."""
        client_port = conn.sock.getsockname()[1]
        server_port = conn.sock.getpeername()[1]
        inode = None
        with open("/proc/net/tcp") as f:
            next(f)
            for row in f:
                fields = row.split()
                local, remote = fields[1], fields[2]
                if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
                    inode = fields[9]
                    break
        assert inode, "server end of the connection not found in /proc/net/tcp"
        target = f"socket:[{inode}]"
        holders = []
        for pid in self.workers():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        holders.append(pid)
                        break
                except OSError:
                    pass
        assert len(holders) == 1, f"expected one worker holding the session, found {holders}"
        return holders[0]

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM and wait; returns the exit status. Fails when the master
        does not exit in time or leaves workers behind."""
        kids = self.children()
        self.expect_exit = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise AssertionError(f"pillar serve did not exit within {timeout}s of SIGTERM")
        leftover = [p for p in kids if pid_alive(p)]
        deadline = time.monotonic() + 5
        while leftover and time.monotonic() < deadline:
            time.sleep(0.05)
            leftover = [p for p in kids if pid_alive(p)]
        for p in leftover:
            os.kill(p, signal.SIGKILL)
        assert not leftover, f"workers {leftover} still running after the master exited"
        return rc

    def restart(self):
        rc = self.stop()
        assert rc == 0, f"pillar serve exited with {rc} on SIGTERM"
        self.start()

    def kill_all(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- clients ----------------------------------------------------------

    def conn(self, **kw) -> Conn:
        return Conn(self.port, **kw)

    def tls_context(self, version=None) -> ssl.SSLContext:
        """A client context that trusts this instance's certificate."""
        assert self.cert, "this instance has no test certificate (make_pillar(tls=True))"
        return tls_client_context(self.cert, version)

    def pop3s(self, context=None, **kw) -> Conn:
        """A connection to the POP3S port, handshake done, greeting read."""
        assert self.pop3s_port, "this instance has no POP3S listener (make_pillar(pop3s=True))"
        return Conn(self.pop3s_port, tls=context or self.tls_context(), **kw)

    def stls(self, context=None, **kw) -> Conn:
        """A connection to the POP3 port upgraded with STLS, greeting read."""
        c = Conn(self.port, **kw)
        reply = c.cmd("STLS")
        assert reply.startswith(b"+OK"), reply
        c.starttls(context or self.tls_context())
        return c

    def smtp(self, greet=True, **kw) -> "SmtpConn":
        assert self.smtp_port, "this instance has no SMTP listener (make_pillar(smtp=True))"
        return SmtpConn(self.smtp_port, greet=greet, **kw)

    def lmtp(self, unix=False, greet=True, **kw) -> "SmtpConn":
        target = self.lmtp_path if unix else self.lmtp_port
        assert target, "this instance has no such LMTP listener (make_pillar(lmtp=...))"
        return SmtpConn(target, greet=greet, **kw)

    def smtplib(self, **kw):
        """A connected smtplib.SMTP to the SMTP listener."""
        import smtplib

        assert self.smtp_port, "this instance has no SMTP listener (make_pillar(smtp=True))"
        return smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname="client.example.org",
                            timeout=IO_TIMEOUT, **kw)

    def session(self, user, password) -> Conn:
        c = Conn(self.port)
        c.login(user, password)
        return c

    def wait_unlocked(self, user, password, timeout=10):
        """Log in, retrying while the mailbox is still [IN-USE] (a closed
        session's lock may take a moment to be released). Returns the logged-in
        connection."""
        deadline = time.monotonic() + timeout
        while True:
            c = Conn(self.port)
            c.ok("USER " + user)
            reply = c.cmd("PASS " + password)
            if reply.startswith(b"+OK"):
                return c
            c.close()
            assert b"[IN-USE]" in reply, reply
            if time.monotonic() > deadline:
                raise AssertionError(f"mailbox {user} still in use after {timeout}s")
            time.sleep(0.1)

    # -- teardown ---------------------------------------------------------

    def finish(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                rc = self.stop()
                if rc != 0:
                    self.problems.append(f"pillar serve exited with {rc} on SIGTERM")
            except AssertionError as e:
                self.problems.append(str(e))
        elif not self.expect_exit:
            self.problems.append(f"pillar serve died during the test (exit {self.proc.returncode})")
        self.kill_all()
        log = self.log()
        for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
            if marker in log:
                self.problems.append(f"sanitizer report in the server log ({marker})")
        # A process the master saw crash (tests kill with SIGKILL or
        # SIGTERM, never these); the master restarts it, so nothing else
        # would show it. The raw wait status of "exited ... status=" holds
        # the signal in its low 7 bits.
        for kind, pid, how, value in CRASH_RE.findall(log):
            sig = int(value) if how == "signal" else int(value) & 0x7F
            if sig in CRASH_SIGNALS:
                self.problems.append(f"{kind} pid={pid} crashed with signal {sig}")


# What the master logs when a worker or the auth process ends: "worker
# died pid=N signal=S", "auth process exited pid=N status=W", ...
CRASH_RE = re.compile(r"\b(worker|auth process) (?:died|exited) pid=(\d+) (signal|status)=(\d+)")
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL,
                 signal.SIGSYS, signal.SIGTRAP}

USER = "alice@example.test"
PASSWORD = "alice-Secret-1"
BOB = "bob@example.test"
BOB_PASSWORD = "bob-Secret-2"


def simple_message(i, body=None):
    body = body if body is not None else f"This is message number {i}.\nSecond line.\n"
    return (
        f"From: sender{i}@example.org\nTo: {USER}\nSubject: test message {i}\n"
        f"Message-ID: <{i}.test@example.org>\n\n{body}"
    ).encode()


class POP3From(poplib.POP3):
    """poplib's client; with source, its socket bound to that address first
    (all of 127/8 is loopback: another client host)."""

    def __init__(self, port, source=None, timeout=IO_TIMEOUT):
        self.source = source
        super().__init__("127.0.0.1", port, timeout=timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0) if self.source else None)


def pop3_login(port, user, password, source=None):
    """A poplib session: (client, None) after +OK, or (None, the -ERR reply)."""
    p = POP3From(port, source)
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


def is_root():
    return os.geteuid() == 0


def tool(name):
    return shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)


def mpop(p, work, port=None, tls=None, auth="user", keep=True, extra=""):
    """Run mpop (with -d, its protocol trace) once against instance p:
    POP3 on port (p.port by default), tls None (plain), "stls" or "pop3s"
    (trusting p.cert), keeping or deleting what it fetched, extra lines
    added to its account. Returns its result with .log (stdout and stderr)
    and .blobs, the messages it delivered this time, sorted; they are then
    taken out of its Maildir, so the next run shows only what it adds."""
    conf = work / "mpoprc"
    maildir = work / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    tls_lines = (f"tls on\ntls_starttls {'on' if tls == 'stls' else 'off'}\n"
                 f"tls_trust_file {p.cert}\n" if tls else "tls off\n")
    conf.write_text(f"defaults\n{tls_lines}auth {auth}\nkeep {'on' if keep else 'off'}\n"
                    f"only_new on\nreceived_header off\nuidls_file {work / 'mpop-uidls'}\n\n"
                    f"account pillar\nhost 127.0.0.1\nport {port or p.port}\nuser {USER}\n"
                    f"password {PASSWORD}\ndelivery maildir {maildir}\n{extra}")
    os.chmod(conf, 0o600)
    r = subprocess.run([tool("mpop"), "-C", str(conf), "-d", "pillar"], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=120, env=dict(os.environ, HOME=str(work)))
    r.log = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    new = maildir / "new"
    r.blobs = sorted(f.read_bytes() for f in new.iterdir())
    for f in new.iterdir():
        f.unlink()
    return r
