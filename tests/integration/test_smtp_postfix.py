"""Postfix against Pillar (Debian package postfix; nothing of the system's
Postfix is used or started: every instance here has its own config, queue
and data directory under the test's temp dir and listens on loopback only).

- smtp-source, Postfix's load generator, sends 1000 messages over 10
  connections to Pillar's SMTP listener; every one must then be in the
  mailbox exactly once and intact.
- A real Postfix, started by the test, relays mail for example.test to
  Pillar over LMTP; mail injected into Postfix over SMTP must arrive, and a
  full mailbox must be deferred by Postfix without bouncing the others."""

import grp
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness import BOB, PASSWORD, USER, free_port, lf, pid_alive, split_trace, wait_for

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"


def need_postfix_tools(*paths):
    for p in paths:
        if not os.access(p, os.X_OK):
            pytest.skip(f"{p} not installed (Debian package postfix)")


# -- smtp-source -------------------------------------------------------------------


def capture_one_message(args):
    """Run smtp-source against a tiny in-test SMTP sink and return the DATA
    it sends (CRLF, as on the wire, without the final ".CRLF"): the reference
    for what every message must look like after delivery."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = {}

    def serve():
        c, _ = srv.accept()
        c.settimeout(20)
        f = c.makefile("rwb")

        def say(line):
            f.write(line + b"\r\n")
            f.flush()

        say(b"220 sink")
        while True:
            line = f.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb == b"DATA":
                say(b"354 go")
                data = b""
                while True:
                    line = f.readline()
                    if line in (b".\r\n", b""):
                        break
                    data += line
                got["data"] = data
                say(b"250 2.0.0 ok")
            elif verb == b"QUIT":
                say(b"221 2.0.0 bye")
                break
            else:
                say(b"250 2.0.0 ok")
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    r = subprocess.run([SMTP_SOURCE, *args, "-m", "1", f"127.0.0.1:{port}"],
                       capture_output=True, timeout=30)
    t.join(20)
    srv.close()
    assert r.returncode == 0, r.stderr
    return got["data"]


def test_smtp_source_1000_messages_over_10_connections(make_pillar):
    need_postfix_tools(SMTP_SOURCE)
    p = make_pillar(smtp=True)
    p.add_user(USER, PASSWORD)
    common = ["-l", "500", "-M", "client.example.org", "-f", "sender@example.org", "-t", USER]
    ref = capture_one_message(common)
    ref_head, _, ref_body = ref.partition(b"\r\n\r\n")
    assert ref_body, ref

    start = time.monotonic()
    r = subprocess.run([SMTP_SOURCE, "-s", "10", "-m", "1000", "-d", *common,
                        f"127.0.0.1:{p.smtp_port}"], capture_output=True, timeout=240)
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    elapsed = time.monotonic() - start

    # Every message got its 250 only after it was on disk: all are there now.
    files = p.check_names(USER)
    assert len(files) == 1000, f"{len(files)} messages stored, want 1000"
    ids, sockets = [], set()
    for name, data in files.items():
        return_path, received, rest = split_trace(data)
        assert return_path == b"<sender@example.org>", (name, return_path)
        assert b"client.example.org" in received, (name, received)
        head, sep, body = rest.partition(b"\n\n")
        assert sep and body == lf(ref_body), (name, rest[-300:])
        # The rest of the header is smtp-source's, unchanged.
        assert [l.split(b":")[0] for l in head.split(b"\n")] == \
            [l.split(b":")[0] for l in ref_head.split(b"\r\n")], (name, head)
        m = re.search(rb"(?m)^Message-Id: <([0-9a-f]+)\.([0-9a-f]+)\.([0-9a-f]+)@", head)
        assert m, head
        ids.append(m.group(0))
        sockets.add(m.group(2))
    # smtp-source gives every message its own ID (process, socket, counter):
    # 1000 files with 1000 different IDs means each message exactly once.
    assert len(set(ids)) == 1000, f"{1000 - len(set(ids))} duplicates"
    assert len(sockets) == 10, f"sent over {len(sockets)} connections, want 10"
    assert not p.partial_files()
    print(f"smtp-source: 1000 messages in {elapsed:.1f}s")


# -- a real Postfix relaying over LMTP -------------------------------------------


MASTER_CF = """\
127.0.0.1:{smtpd_port} inet n - n - - smtpd
pickup    unix  n - n 60   1 pickup
cleanup   unix  n - n -    0 cleanup
qmgr      unix  n - n 300  1 qmgr
rewrite   unix  - - n -    - trivial-rewrite
bounce    unix  - - n -    0 bounce
defer     unix  - - n -    0 bounce
trace     unix  - - n -    0 bounce
verify    unix  - - n -    1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -    - proxymap
smtp      unix  - - n -    - smtp
relay     unix  - - n -    - smtp
showq     unix  n - n -    - showq
error     unix  - - n -    - error
retry     unix  - - n -    - error
discard   unix  - - n -    - discard
lmtp      unix  - - n -    - lmtp
anvil     unix  - - n -    1 anvil
scache    unix  - - n -    1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


class Postfix:
    """A private Postfix instance: own config_directory, queue_directory and
    data_directory under `base`, smtpd on a free loopback port, mail for
    example.test relayed to `lmtp_target` over LMTP, log in base/maillog."""

    def __init__(self, base: Path, lmtp_target):
        self.base = base
        self.conf = base / "etc"
        self.queue = base / "queue"
        self.data = base / "data"
        self.maillog = base / "maillog"
        self.port = free_port()
        for d in (self.conf, self.queue, self.data):
            d.mkdir(parents=True)
        shutil.chown(self.data, "postfix", "postfix")

        def default(name):
            return subprocess.run([POSTCONF, "-d", "-h", name], capture_output=True,
                                  text=True, timeout=30).stdout.strip()

        (self.conf / "main.cf").write_text(f"""\
compatibility_level = 3.6
config_directory = {self.conf}
queue_directory = {self.queue}
data_directory = {self.data}
daemon_directory = {default("daemon_directory")}
command_directory = {default("command_directory")}
shlib_directory = {default("shlib_directory")}
meta_directory = {default("meta_directory")}
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.postfix.test
mydomain = postfix.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.test
relay_transport = lmtp:{lmtp_target}
smtpd_peername_lookup = no
smtp_host_lookup = native
lmtp_host_lookup = native
disable_dns_lookups = yes
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file = {self.maillog}
maillog_file_prefixes = {base}
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
""")
        (self.conf / "master.cf").write_text(MASTER_CF.format(smtpd_port=self.port))

    def postfix(self, *args, check=True):
        r = subprocess.run([POSTFIX, "-c", str(self.conf), *args], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=60)
        if check:
            assert r.returncode == 0, (args, r.stdout, r.stderr, self.log()[-3000:])
        return r

    def start(self):
        self.postfix("start")
        deadline = time.monotonic() + 30
        while True:
            try:
                s = smtplib.SMTP("127.0.0.1", self.port, timeout=5)
                s.quit()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("Postfix smtpd did not come up; log:\n" + self.log()[-3000:])
                time.sleep(0.1)

    def master_pid(self):
        try:
            return int((self.queue / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self):
        pid = self.master_pid()
        self.postfix("stop", check=False)
        deadline = time.monotonic() + 15
        while pid and pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid and pid_alive(pid):
            self.postfix("abort", check=False)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def log(self):
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture
def postfix_to_pillar(make_pillar):
    need_postfix_tools(POSTFIX, POSTCONF)
    if os.geteuid() != 0:
        pytest.skip("a private Postfix instance must be started as root")
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        pytest.skip("no 'postfix' account or 'postdrop' group (Debian package postfix makes them)")
    p = make_pillar(smtp=True, lmtp=True)
    p.add_user(USER, PASSWORD)
    p.add_user(BOB, "bob-pw")
    base = Path(tempfile.mkdtemp(prefix="pillar-postfix-"))
    os.chmod(base, 0o755)
    pf = Postfix(base, f"inet:127.0.0.1:{p.lmtp_port}")
    try:
        pf.start()
        yield p, pf
    finally:
        pf.stop()
        # Shown with the report of a failed test (captured teardown output).
        print("---- Postfix log ----\n" + pf.log()[-20000:])
        if not os.environ.get("PILLAR_KEEP_TMP"):
            shutil.rmtree(base, ignore_errors=True)


def message(n, body=b"Relayed by Postfix.\r\n.dot line\r\n8-bit: \xc3\xa9\r\n"):
    return (f"From: <sender@example.org>\r\nTo: <{USER}>\r\nSubject: via postfix {n}\r\n"
            f"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            f"Message-ID: <postfix-{n}@example.org>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
            f"\r\n").encode() + body


def arrived(p, address, msg, timeout=30):
    """Wait for the message in the mailbox; returns its stored form after
    Pillar's two trace headers (Postfix's Received: comes next)."""
    wait_for(lambda: p.stored(address), timeout,
             f"the message relayed by Postfix in {address}'s mailbox")
    files = p.check_names(address)
    assert len(files) == 1, sorted(files)
    return_path, received, rest = split_trace(next(iter(files.values())))
    assert return_path == b"<sender@example.org>", return_path
    assert b"LMTP" in received.upper(), received
    assert rest.startswith(b"Received: from "), rest[:300]
    assert b"relay.postfix.test" in rest.split(b"\n\n")[0]
    assert rest.endswith(lf(msg)), (rest[-400:], lf(msg)[-200:])
    return rest


def test_postfix_relays_to_pillar_over_lmtp(postfix_to_pillar):
    p, pf = postfix_to_pillar
    s = smtplib.SMTP("127.0.0.1", pf.port, timeout=30)
    assert s.sendmail("sender@example.org", [USER, BOB], message(1)) == {}
    s.quit()
    arrived(p, USER, message(1))
    arrived(p, BOB, message(1))
    wait_for(lambda: len(re.findall(r"status=sent", pf.log())) >= 2, 20,
             "Postfix to log both deliveries as sent")
    # POP3 gives it back.
    with p.session(USER, PASSWORD) as c:
        assert c.stat()[0] == 1
        c.ok("RETR 1")
        lines = c.multiline()
        c.ok("QUIT")
    assert b"".join(l + b"\r\n" for l in lines).endswith(message(1))


def test_postfix_relays_a_large_message(postfix_to_pillar):
    p, pf = postfix_to_pillar
    body = b"".join(b"%07d " % i + b"." * 60 + b"\r\n" for i in range(30000))  # ~2 MB
    s = smtplib.SMTP("127.0.0.1", pf.port, timeout=60)
    assert s.sendmail("sender@example.org", [USER], message(2, body)) == {}
    s.quit()
    arrived(p, USER, message(2, body), timeout=60)


def test_postfix_full_mailbox_is_deferred_and_others_delivered(postfix_to_pillar):
    p, pf = postfix_to_pillar
    p.cli("user", "quota", USER, "--bytes", "1K")
    big = message(3, b"too big for alice\r\n" * 200)
    s = smtplib.SMTP("127.0.0.1", pf.port, timeout=30)
    assert s.sendmail("sender@example.org", [USER, BOB], big) == {}
    s.quit()
    arrived(p, BOB, big)
    # Alice's copy is refused with a per-recipient LMTP reply; Postfix logs it
    # as deferred (4.2.2) or bounced (5.2.2), and her mailbox stays empty.
    wait_for(lambda: re.search(r"to=<alice@example\.test>.*dsn=[45]\.2\.2", pf.log()), 30,
             "Postfix to log alice's copy as refused for quota")
    assert p.stored(USER) == {}
    assert re.search(r"to=<bob@example\.test>.*status=sent", pf.log())
