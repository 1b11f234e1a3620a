"""TLS with real clients: POP3 STLS (RFC 2595), POP3S (RFC 8314), SMTP and
LMTP STARTTLS (RFC 3207).

Every instance here uses a fresh self-signed certificate made with the openssl
CLI for localhost and 127.0.0.1 (harness.shared_cert), and the clients verify
the server against it. The clients are openssl s_client, curl, mpop,
fetchmail, Python's poplib and smtplib, and raw sockets wrapped with Python's
ssl module where a test has to control every byte (STARTTLS injection,
garbage handshakes)."""

import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import textwrap
import time
from pathlib import Path

import poplib

import pytest

from harness import (
    BOB,
    BOB_PASSWORD,
    IO_TIMEOUT,
    PASSWORD,
    USER,
    Conn,
    make_cert,
    message_lines,
    mpop,
    simple_message,
    split_trace,
    tool,
    unset_key,
    vsize,
    wait_for,
)


def needs(name):
    return pytest.mark.skipif(not tool(name), reason=f"{name} not installed")


@pytest.fixture
def box(make_pillar):
    """An instance with the test certificate, POP3 (STLS), POP3S, SMTP and
    LMTP listeners, and alice's mailbox holding three messages. Returns
    (pillar, [(uidl, data), ...])."""
    p = make_pillar(pop3s=True, smtp=True, lmtp=True)
    p.add_user(USER, PASSWORD)
    msgs = []
    for i in range(1, 4):
        data = simple_message(i)
        msgs.append((p.deliver(USER, data), data))
    return p, msgs


def capa(c: Conn):
    reply = c.cmd("CAPA")
    assert reply.startswith(b"+OK"), reply
    return [l.decode() for l in c.multiline()]


def strict_context(p):
    """A client context that reports a TCP close without close_notify as an
    error, as OpenSSL 3 clients (s_client, fetchmail, ...) do. Python's
    contexts ignore it by default (OP_IGNORE_UNEXPECTED_EOF)."""
    ctx = p.tls_context()
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    return ctx


def read_to_eof_strict(c: Conn, timeout=None) -> bytes:
    """Everything the server sends until it ends the TLS session. The end
    must be a TLS close_notify (RFC 8446 §6.1: each party MUST send one
    before closing its write side), not a bare TCP close. c must have been
    made with strict_context()."""
    assert not c.sock.context.options & ssl.OP_IGNORE_UNEXPECTED_EOF
    c.sock.suppress_ragged_eofs = False
    try:
        return c.read_to_eof(timeout)
    except ssl.SSLError as e:
        raise AssertionError(
            f"TLS session ended without close_notify ({e}); received before that: {bytes(c.buf)!r}"
        )


def login_unlocked(make, user=USER, password=PASSWORD, timeout=10) -> Conn:
    """make() gives a new connection; log in on it, retrying while the
    mailbox is still [IN-USE] (a session that has just ended may hold the
    lock a moment longer). Returns the logged-in connection."""
    deadline = time.monotonic() + timeout
    while True:
        c = make()
        c.ok(f"USER {user}")
        reply = c.cmd(f"PASS {password}")
        if reply.startswith(b"+OK"):
            return c
        c.close()
        assert b"[IN-USE]" in reply, reply
        assert time.monotonic() < deadline, f"mailbox {user} still in use after {timeout}s"
        time.sleep(0.05)


def der_of(pem_path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(Path(pem_path).read_text())


# -- openssl s_client ---------------------------------------------------------


def s_client(args, lines, timeout=30):
    """Run openssl s_client with -brief (connection facts on stderr) and the
    given input lines sent with CRLF. -nocommands: a line starting with Q
    (QUIT) would otherwise make s_client itself hang up. Returns the
    completed process; .protocol is the negotiated version or None."""
    r = subprocess.run(
        [tool("openssl"), "s_client", *args, "-brief", "-ign_eof", "-nocommands", "-crlf"],
        input="".join(l + "\n" for l in lines).encode(),
        capture_output=True,
        timeout=timeout,
    )
    r.out = r.stdout.decode(errors="replace")
    r.err = r.stderr.decode(errors="replace")
    m = re.search(r"^Protocol version: (\S+)$", r.err, re.M)
    r.protocol = m.group(1) if m else None
    return r


def check_s_client_pop3(r, msgs, greeting):
    """greeting: s_client prints the greeting only on implicit TLS (with
    -starttls it reads it itself before STLS)."""
    assert r.protocol in ("TLSv1.2", "TLSv1.3"), r.err
    assert re.search(r"^Verification: OK$", r.err, re.M), r.err
    lines = r.out.splitlines()
    if greeting:
        assert lines and lines[0].startswith("+OK"), r.out + r.err
        lines = lines[1:]
    octets = sum(vsize(d) for _, d in msgs)
    # USER, PASS, STAT and QUIT, pipelined (the server offers PIPELINING):
    # four replies, in order, and the session ends cleanly.
    assert len(lines) == 4, r.out + r.err
    assert all(l.startswith("+OK") for l in lines), r.out
    assert lines[2] == f"+OK {len(msgs)} {octets}", r.out
    assert r.returncode == 0, r.err


LOGIN_LINES = [f"USER {USER}", f"PASS {PASSWORD}", "STAT", "QUIT"]


@needs("openssl")
def test_openssl_starttls_pop3(box):
    p, msgs = box
    r = s_client(["-starttls", "pop3", "-connect", f"127.0.0.1:{p.port}", "-CAfile", str(p.cert),
                  "-verify_return_error"], LOGIN_LINES)
    check_s_client_pop3(r, msgs, greeting=False)


@needs("openssl")
def test_openssl_pop3s(box):
    p, msgs = box
    r = s_client(["-connect", f"127.0.0.1:{p.pop3s_port}", "-CAfile", str(p.cert),
                  "-verify_return_error"], LOGIN_LINES)
    check_s_client_pop3(r, msgs, greeting=True)
    # TLS 1.3 is what two current OpenSSLs agree on.
    assert r.protocol == "TLSv1.3", r.err


@needs("openssl")
def test_openssl_starttls_smtp(box):
    p, _ = box
    r = s_client(["-starttls", "smtp", "-connect", f"127.0.0.1:{p.smtp_port}", "-CAfile",
                  str(p.cert), "-verify_return_error"], ["EHLO client.example.org", "QUIT"])
    assert r.protocol in ("TLSv1.2", "TLSv1.3"), r.err
    assert re.search(r"^Verification: OK$", r.err, re.M), r.err
    lines = r.out.splitlines()
    # The EHLO after TLS: 250 lines without STARTTLS (RFC 3207 §4.2), then 221.
    assert lines and lines[0].startswith("250-"), r.out + r.err
    assert lines[-1].startswith("221"), r.out + r.err
    assert not any("STARTTLS" in l for l in lines), r.out
    assert r.returncode == 0, r.err


@needs("openssl")
@pytest.mark.parametrize("version,expect", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_openssl_tls12_and_tls13_clients_are_served(box, version, expect):
    p, msgs = box
    for args in (["-connect", f"127.0.0.1:{p.pop3s_port}"],
                 ["-starttls", "pop3", "-connect", f"127.0.0.1:{p.port}"]):
        r = s_client([*args, "-CAfile", str(p.cert), "-verify_return_error", version],
                     [f"USER {USER}", f"PASS {PASSWORD}", "STAT", "QUIT"])
        assert r.protocol == expect, r.err
        assert re.search(r"^Verification: OK$", r.err, re.M), r.err
    # The conversation itself is checked by the tests above and, for TLS 1.2,
    # by poplib and fetchmail below.


@needs("openssl")
@pytest.mark.parametrize("version", ["-tls1_1", "-tls1"])
def test_openssl_old_tls_is_refused_by_the_server(box, version):
    """The client must really offer the old version (security level 0 lets
    OpenSSL 3 do that), so the refusal seen is the server's: a
    protocol_version alert (70), never a session."""
    p, _ = box
    targets = [
        ("pop3s", ["-connect", f"127.0.0.1:{p.pop3s_port}"]),
        ("stls", ["-starttls", "pop3", "-connect", f"127.0.0.1:{p.port}"]),
        ("smtp", ["-starttls", "smtp", "-connect", f"127.0.0.1:{p.smtp_port}"]),
    ]
    for what, args in targets:
        r = s_client([*args, "-CAfile", str(p.cert), version, "-cipher", "DEFAULT@SECLEVEL=0"],
                     ["QUIT"])
        assert r.protocol is None, (what, r.err)
        assert "alert protocol version" in r.err, (what, r.err)
        assert r.returncode != 0, what
    # Nothing else is affected.
    with p.pop3s() as c:
        c.login(USER, PASSWORD)
        assert c.stat()[0] == 3


# -- curl ---------------------------------------------------------------------


def curl(url, *extra, user=USER, password=PASSWORD):
    r = subprocess.run(
        [tool("curl"), "-sS", "--max-time", "30", "--user", f"{user}:{password}", *extra, url],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    r.err = r.stderr.decode(errors="replace")
    return r


@needs("curl")
def test_curl_pop3s_list_and_retr(box):
    p, msgs = box
    url = f"pop3s://127.0.0.1:{p.pop3s_port}/"
    r = curl(url, "--cacert", str(p.cert))
    assert r.returncode == 0, r.err
    assert r.stdout == b"".join(b"%d %d\r\n" % (i, vsize(d)) for i, (_, d) in enumerate(msgs, 1))
    r = curl(url + "2", "--cacert", str(p.cert))
    assert r.returncode == 0, r.err
    assert r.stdout == b"".join(l + b"\r\n" for l in message_lines(msgs[1][1]))
    # -k is not needed, and a wrong trust anchor is refused (the check is real).
    other, _ = make_cert(p.base / "other", serial=77)
    r = curl(url, "--cacert", str(other))
    assert r.returncode == 60, (r.returncode, r.err)  # CURLE_PEER_FAILED_VERIFICATION


@needs("curl")
def test_curl_ssl_reqd_uses_stls(box):
    p, msgs = box
    r = curl(f"pop3://127.0.0.1:{p.port}/1", "--ssl-reqd", "--cacert", str(p.cert), "-v")
    assert r.returncode == 0, r.err
    assert re.search(r"^> STLS\r?$", r.err, re.M), r.err
    assert "TLSv1.3" in r.err or "TLSv1.2" in r.err, r.err
    assert r.stdout == b"".join(l + b"\r\n" for l in message_lines(msgs[0][1]))


@needs("curl")
def test_curl_ssl_reqd_fails_without_a_certificate(make_pillar):
    """Without tls_cert the server offers no STLS, so a client that requires
    TLS gives up instead of sending the password in clear."""
    p = make_pillar(start=False)
    unset_key(p.conf, "tls_cert")
    unset_key(p.conf, "tls_key")
    p.start()
    p.add_user(USER, PASSWORD)
    with p.conn() as c:
        assert "STLS" not in capa(c)
        assert c.cmd("STLS").startswith(b"-ERR")
    r = curl(f"pop3://127.0.0.1:{p.port}/", "--ssl-reqd")
    assert r.returncode == 64, (r.returncode, r.err)  # CURLE_USE_SSL_FAILED


# -- mpop -----------------------------------------------------------------------


def subjects(blobs):
    out = []
    for b in blobs:
        m = re.search(rb"^Subject: (.*?)\r?$", b, re.M)
        assert m, b[:200]
        out.append(m.group(1).decode())
    return sorted(out)


@needs("mpop")
@pytest.mark.parametrize("starttls", [True, False], ids=["stls", "pop3s"])
def test_mpop_tls_auth_user(box, tmp_path, starttls):
    p, msgs = box
    port = p.port if starttls else p.pop3s_port
    r = mpop(p, tmp_path, port, "stls" if starttls else "pop3s")
    blobs = r.blobs
    assert r.returncode == 0, r.log
    assert subjects(blobs) == [f"test message {i}" for i in (1, 2, 3)], r.log
    assert bool(re.search(r"^--> STLS\r?$", r.log, re.M)) == starttls, r.log
    # mpop's debug output shows the TLS session it set up.
    assert re.search(r"TLS session parameters:|\(TLS1\.[23]\)", r.log), r.log
    assert p.uniques_on_disk(USER) == sorted(u for u, _ in msgs)


@needs("mpop")
def test_mpop_refuses_a_certificate_it_does_not_trust(box, tmp_path):
    p, _ = box
    other, _ = make_cert(tmp_path / "other", serial=78)
    r = mpop(p, tmp_path, p.pop3s_port, "pop3s", extra=f"tls_trust_file {other}\n")
    blobs = r.blobs
    assert r.returncode != 0, r.log
    assert re.search(r"certificate", r.log, re.I), r.log
    assert not re.search(r"^--> USER", r.log, re.M), r.log  # no password sent
    assert blobs == []


# -- fetchmail ------------------------------------------------------------------


STORE_SCRIPT = """\
import os, sys, tempfile
fd, _ = tempfile.mkstemp(dir=sys.argv[1], suffix=".eml")
os.write(fd, sys.stdin.buffer.read())
os.close(fd)
"""


def fetchmail(p, work: Path, port, options):
    rc = work / "fetchmailrc"
    out = work / "out"
    out.mkdir(exist_ok=True)
    script = work / "store.py"
    script.write_text(STORE_SCRIPT)
    rc.write_text(textwrap.dedent(f"""\
        set no syslog
        set no bouncemail
        poll 127.0.0.1 service {port} protocol pop3 auth password
          user "{USER}" there with password "{PASSWORD}" is "root" here
          keep
          {options}
          mda "/usr/bin/python3 {script} {out}"
        """))
    os.chmod(rc, 0o600)
    home = work / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, HOME=str(home), FETCHMAILHOME=str(home))
    r = subprocess.run(
        [tool("fetchmail"), "-f", str(rc), "--pidfile", str(work / "fetchmail.pid"),
         "--keep", "--all", "--nosyslog", "-v", "-v"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env=env,
    )
    r.log = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    blobs = sorted(f.read_bytes() for f in out.iterdir())
    return r, blobs


@needs("fetchmail")
def test_fetchmail_ssl_on_pop3s(box, tmp_path):
    p, _ = box
    r, blobs = fetchmail(p, tmp_path, p.pop3s_port,
                         f"ssl sslcertck sslcertfile {p.cert} sslcommonname localhost")
    assert r.returncode == 0, r.log
    assert subjects(blobs) == [f"test message {i}" for i in (1, 2, 3)], r.log
    assert not re.search(r"> STLS", r.log), r.log


@needs("fetchmail")
def test_fetchmail_sslproto_tls12_uses_stls(box, tmp_path):
    p, _ = box
    r, blobs = fetchmail(p, tmp_path, p.port,
                         f"sslproto TLS1.2 sslcertck sslcertfile {p.cert} sslcommonname localhost")
    assert r.returncode == 0, r.log
    assert re.search(r"POP3> STLS", r.log), r.log
    assert re.search(r"TLSv1\.2", r.log), r.log
    assert subjects(blobs) == [f"test message {i}" for i in (1, 2, 3)], r.log


@needs("fetchmail")
def test_fetchmail_sslcertck_refuses_an_untrusted_certificate(box, tmp_path):
    p, _ = box
    other, _ = make_cert(tmp_path / "other", serial=79)
    r, blobs = fetchmail(p, tmp_path, p.pop3s_port,
                         f"ssl sslcertck sslcertfile {other} sslcommonname localhost")
    assert r.returncode != 0, r.log
    assert re.search(r"certificate", r.log, re.I), r.log
    assert "POP3> USER" not in r.log, r.log
    assert blobs == []


# -- Python poplib and smtplib ------------------------------------------------


def test_poplib_stls(box):
    p, msgs = box
    client = poplib.POP3("127.0.0.1", p.port, timeout=IO_TIMEOUT)
    try:
        assert "STLS" in client.capa()
        client.stls(context=p.tls_context())
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        caps = client.capa()
        assert "STLS" not in caps, caps
        assert "USER" in caps, caps
        client.user(USER)
        client.pass_(PASSWORD)
        assert client.stat() == (3, sum(vsize(d) for _, d in msgs))
        resp, lines, octets = client.retr(2)
        assert lines == message_lines(msgs[1][1])
        assert client.quit().startswith(b"+OK")
    finally:
        client.close()


def test_poplib_pop3_ssl(box):
    p, msgs = box
    client = poplib.POP3_SSL("127.0.0.1", p.pop3s_port, context=p.tls_context(),
                             timeout=IO_TIMEOUT)
    try:
        assert client.sock.version() == "TLSv1.3"
        caps = client.capa()
        assert "STLS" not in caps and "USER" in caps, caps
        client.user(USER)
        client.pass_(PASSWORD)
        assert client.stat()[0] == 3
        for i, (_, data) in enumerate(msgs, 1):
            assert client.retr(i)[1] == message_lines(data)
        assert client.quit().startswith(b"+OK")
    finally:
        client.close()


def test_poplib_pop3_ssl_tls12(box):
    p, msgs = box
    client = poplib.POP3_SSL("127.0.0.1", p.pop3s_port,
                             context=p.tls_context(ssl.TLSVersion.TLSv1_2), timeout=IO_TIMEOUT)
    try:
        assert client.sock.version() == "TLSv1.2"
        client.user(USER)
        client.pass_(PASSWORD)
        assert client.stat()[0] == 3
    finally:
        client.close()


def test_smtplib_starttls_delivery_is_esmtps(box):
    p, _ = box
    before = len(p.stored(BOB)) if p.maildir(BOB).exists() else 0
    p.add_user(BOB, BOB_PASSWORD)
    s = p.smtplib()
    try:
        code, _ = s.ehlo()
        assert code == 250 and s.has_extn("starttls")
        code, _ = s.starttls(context=p.tls_context())
        assert code == 220
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        code, _ = s.ehlo()
        assert code == 250
        assert not s.has_extn("starttls")
        msg = (b"From: carol@example.org\r\nTo: " + BOB.encode() +
               b"\r\nSubject: over TLS\r\nMessage-ID: <tls-1@example.org>\r\n\r\nsecret body\r\n")
        assert s.sendmail("carol@example.org", [BOB], msg) == {}
        s.quit()
    finally:
        s.close()
    stored = p.wait_stored(BOB, before + 1)
    _, received, rest = split_trace(stored[-1])
    # RFC 3848: "with ESMTPS" for ESMTP under TLS.
    assert re.search(rb"\bwith ESMTPS\b", received), received
    assert re.search(rb"TLSv1\.[23]", received), received
    assert rest.endswith(b"secret body\n"), rest


def test_lmtp_starttls(box):
    p, _ = box
    c = p.lmtp()
    try:
        r = c.ehlo(verb="LHLO")
        assert "STARTTLS" in c.keywords(r)
        assert c.cmd("STARTTLS").code == 220
        c.starttls(p.tls_context())
        # State was reset: a transaction needs LHLO again.
        assert c.cmd("MAIL FROM:<carol@example.org>").code == 503
        r = c.ehlo(verb="LHLO")
        assert "STARTTLS" not in c.keywords(r)
        c.expect("MAIL FROM:<carol@example.org>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.data(b"Subject: lmtp over tls\r\n\r\nhello\r\n")
    finally:
        c.close()
    stored = [d for d in p.stored_list(USER) if b"lmtp over tls" in d]
    assert len(stored) == 1
    _, received, _ = split_trace(stored[0])
    assert re.search(rb"\bwith LMTPS\b", received), received


# -- the end of a TLS session ---------------------------------------------------


def test_quit_after_stls_is_answered_and_ends_with_close_notify(box):
    p, _ = box
    c = p.stls(context=strict_context(p))
    try:
        c.login(USER, PASSWORD)
        assert c.stat()[0] == 3
        c.send("QUIT\r\n")
        rest = read_to_eof_strict(c)
        assert rest.startswith(b"+OK") and rest.endswith(b"\r\n") and rest.count(b"\r\n") == 1, rest
    finally:
        c.close()


def tls_conn(p, how):
    """A connection under TLS, by STLS or on the POP3S port, whose close
    must come with a close_notify (strict_context)."""
    return (p.stls if how == "stls" else p.pop3s)(context=strict_context(p))


@pytest.mark.parametrize("how,login", [("stls", False), ("pop3s", True)])
def test_quit_under_tls_is_answered_then_close_notify(box, how, login):
    p, _ = box
    c = tls_conn(p, how)
    try:
        if login:
            c.login(USER, PASSWORD)
        c.send("QUIT\r\n")
        rest = read_to_eof_strict(c)
        assert rest.startswith(b"+OK") and rest.count(b"\r\n") == 1, rest
    finally:
        c.close()


@pytest.mark.parametrize("how", ["stls", "pop3s"])
def test_pipelined_login_under_tls_gets_every_reply_and_close_notify(box, how):
    p, msgs = box
    c = tls_conn(p, how)
    try:
        c.send(f"USER {USER}\r\nPASS {PASSWORD}\r\nSTAT\r\nQUIT\r\n")
        replies = read_to_eof_strict(c).split(b"\r\n")
        assert replies[-1] == b"", replies
        replies = replies[:-1]
        assert len(replies) == 4 and all(r.startswith(b"+OK") for r in replies), replies
        assert replies[2] == b"+OK 3 %d" % sum(vsize(d) for _, d in msgs), replies
    finally:
        c.close()


def test_smtp_quit_after_starttls_is_answered(box):
    p, _ = box
    c = p.smtp()
    try:
        c.ehlo()
        assert c.cmd("STARTTLS").code == 220
        c.starttls(strict_context(p))
        c.ehlo()
        c.send("QUIT\r\n")
        rest = read_to_eof_strict(c)
        assert rest.startswith(b"221 ") and rest.count(b"\r\n") == 1, rest
    finally:
        c.close()


# -- STARTTLS injection and state reset -------------------------------------------


def test_stls_injection_pop3(box):
    """Command injection into the TLS session (CVE-2011-0411 in Postfix; DESIGN
    §4: input received before STLS completes is discarded): a command sent
    in the same write as STLS is answered neither in plaintext nor after the
    handshake."""
    p, _ = box
    c = p.conn()
    try:
        c.send(b"STLS\r\nCAPA\r\n")
        reply = c.line()
        assert reply.startswith(b"+OK"), reply
        # starttls() fails if anything followed the +OK in plaintext; a
        # plaintext CAPA reply arriving later would break the handshake.
        c.starttls(p.tls_context())
        # Now our own CAPA, then a command that can only fail. Were the
        # injected CAPA executed after the handshake, its capability list
        # would come first and the reply after ours would be a second one,
        # not the -ERR.
        first = c.cmd("CAPA")
        assert first.startswith(b"+OK"), first
        caps = [l.decode() for l in c.multiline()]
        assert "STLS" not in caps, caps  # the fresh, post-TLS list
        assert "USER" in caps, caps
        reply = c.cmd("NO-SUCH-COMMAND")
        assert reply.startswith(b"-ERR"), reply
    finally:
        c.close()


def test_stls_injection_pop3_login_attempt(box):
    """USER and PASS smuggled behind STLS do not log anyone in after the
    handshake: the next command is still in AUTHORIZATION state."""
    p, _ = box
    c = p.conn()
    try:
        c.send(f"STLS\r\nUSER {USER}\r\nPASS {PASSWORD}\r\n".encode())
        assert c.line().startswith(b"+OK")
        c.starttls(p.tls_context())
        reply = c.cmd("STAT")
        assert reply.startswith(b"-ERR"), reply
        # ...and a fresh login works.
        c.login(USER, PASSWORD)
        assert c.stat()[0] == 3
    finally:
        c.close()


def test_starttls_injection_smtp(box):
    p, _ = box
    c = p.smtp()
    try:
        c.ehlo()
        c.send(b"STARTTLS\r\nRSET\r\n")
        r = c.reply()
        assert r.code == 220, r
        c.starttls(p.tls_context())
        # Were the injected RSET executed after the handshake, its one-line
        # 250 would come before the reply to our EHLO.
        r = c.cmd("EHLO client.example.org")
        assert r.code == 250 and len(r.lines) > 1, r
        assert "STARTTLS" not in c.keywords(r)
        r = c.cmd("NO-SUCH-COMMAND")
        assert r.code in (500, 502), r
    finally:
        c.close()


def test_starttls_injection_lmtp(box):
    p, _ = box
    c = p.lmtp()
    try:
        c.ehlo(verb="LHLO")
        c.send(f"STARTTLS\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<{USER}>\r\n".encode())
        assert c.reply().code == 220
        c.starttls(p.tls_context())
        # The injected MAIL/RCPT were not run: MAIL still needs LHLO first.
        r = c.cmd("MAIL FROM:<a@example.org>")
        assert r.code == 503, r
    finally:
        c.close()


def test_capa_offers_stls_only_before_tls(box):
    p, _ = box
    with p.conn() as c:
        assert "STLS" in capa(c)
    c = p.stls()
    try:
        assert "STLS" not in capa(c)
    finally:
        c.close()
    with p.pop3s() as c:
        assert "STLS" not in capa(c)


def test_stls_inside_tls_is_refused(box):
    p, _ = box
    c = p.stls()
    try:
        assert c.cmd("STLS").startswith(b"-ERR")
        # The session goes on, still under TLS.
        c.login(USER, PASSWORD)
        assert c.stat()[0] == 3
    finally:
        c.close()

    def pop3s_refusing_stls():
        c = p.pop3s()
        assert c.cmd("STLS").startswith(b"-ERR")
        return c

    with login_unlocked(pop3s_refusing_stls) as c:
        assert c.stat()[0] == 3


def test_stls_after_login_is_refused(box):
    """STLS is an AUTHORIZATION-state command (RFC 2595 §4)."""
    p, _ = box
    with p.conn() as c:
        c.login(USER, PASSWORD)
        assert c.cmd("STLS").startswith(b"-ERR")
        assert c.stat()[0] == 3


def test_user_before_stls_does_not_carry_over(box):
    p, _ = box
    c = p.conn()
    try:
        c.ok(f"USER {USER}")
        c.ok("STLS")
        c.starttls(p.tls_context())
        reply = c.cmd(f"PASS {PASSWORD}")
        assert reply.startswith(b"-ERR"), reply
    finally:
        c.close()


def test_smtp_state_reset_after_starttls(box):
    p, _ = box
    c = p.smtp()
    try:
        r = c.ehlo()
        assert "STARTTLS" in c.keywords(r)
        assert c.cmd("STARTTLS").code == 220
        c.starttls(p.tls_context())
        # RFC 3207 §4.2: everything learnt before TLS is forgotten, the
        # EHLO included.
        r = c.cmd("MAIL FROM:<carol@example.org>")
        assert r.code == 503, r
        r = c.ehlo()
        assert "STARTTLS" not in c.keywords(r)
        r = c.cmd("STARTTLS")
        assert r.code == 503, r  # TLS is already active
        c.expect("MAIL FROM:<carol@example.org>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
    finally:
        c.close()


def test_smtp_starttls_after_the_first_mail_is_refused(box):
    """TLS is the login worker's, and the first MAIL moves the session to a
    mail worker (DESIGN §3): from there STARTTLS is a bad sequence (RFC 3207
    §4 lets a server refuse it), no longer offered, and the session goes on
    in the clear."""
    p, _ = box
    c = p.smtp()
    try:
        c.ehlo()
        c.expect("MAIL FROM:<carol@example.org>", 250)
        c.expect("RSET", 250)
        c.expect("STARTTLS", 503, "5.5.1")
        assert "STARTTLS" not in c.keywords(c.ehlo())
        c.expect("MAIL FROM:<carol@example.org>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
    finally:
        c.close()


def test_smtp_helo_then_starttls_needs_a_new_helo(box):
    p, _ = box
    c = p.smtp()
    try:
        c.ehlo()
        assert c.cmd("STARTTLS").code == 220
        c.starttls(p.tls_context())
        r = c.cmd("RCPT TO:<%s>" % USER)
        assert r.code == 503, r
    finally:
        c.close()


# -- failed and garbage handshakes ---------------------------------------------


def partial_client_hello() -> bytes:
    """The first bytes of a TLS ClientHello record that promises 512 bytes of
    handshake and delivers 43: the server must wait for the rest."""
    rnd = random.Random(4).randbytes(32)
    return b"\x16\x03\x01\x02\x00" + b"\x01\x00\x01\xfc" + b"\x03\x03" + rnd + b"\x20" + rnd[:4]


def log_lines_for(p, rip):
    return [l for l in p.log().splitlines() if re.search(rf"\brip={re.escape(rip)}(\s|$)", l)]


def test_garbage_handshakes_are_closed_and_logged_once(make_pillar):
    """Plain text and random bytes on the POP3S port, a half-open handshake,
    a connection that sends nothing, and the same after STLS: each connection
    is closed within login_timeout,
    gets no POP3 reply, is logged once, and a fresh TLS client is served
    throughout. Each abuser uses its own loopback source address so its log
    lines can be told apart."""
    login_timeout = 2.0
    p = make_pillar(pop3s=True, login_timeout="2s")
    p.add_user(USER, PASSWORD)
    p.deliver(USER, simple_message(1))
    abusers = {}

    def connect(source, port):
        s = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT,
                                     source_address=(source, 0))
        return s

    # All at once, so the whole test takes one login_timeout.
    s = connect("127.0.0.2", p.pop3s_port)
    s.sendall(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())
    abusers["127.0.0.2"] = (s, time.monotonic(), "plain text")
    s = connect("127.0.0.3", p.pop3s_port)
    s.sendall(random.Random(3).randbytes(2048))
    abusers["127.0.0.3"] = (s, time.monotonic(), "random bytes")
    s = connect("127.0.0.4", p.pop3s_port)
    s.sendall(partial_client_hello())
    abusers["127.0.0.4"] = (s, time.monotonic(), "half-open handshake")
    c = Conn(p.port, source="127.0.0.5")
    c.ok("STLS")
    assert not c.buf
    c.sock.sendall(random.Random(5).randbytes(300))
    abusers["127.0.0.5"] = (c.sock, time.monotonic(), "random bytes after STLS")
    s = connect("127.0.0.6", p.pop3s_port)
    abusers["127.0.0.6"] = (s, time.monotonic(), "silent connection")
    c = Conn(p.port, source="127.0.0.7")
    c.ok("STLS")
    assert not c.buf
    c.sock.sendall(partial_client_hello())
    abusers["127.0.0.7"] = (c.sock, time.monotonic(), "half-open handshake after STLS")

    # While they hang around, a real client is served.
    with p.pop3s() as good:
        good.login(USER, PASSWORD)
        assert good.stat()[0] == 1

    # Wait for all of them at once, noting when each one is closed.
    import selectors

    sel = selectors.DefaultSelector()
    got, closed_at = {}, {}
    for rip, (s, _, _) in abusers.items():
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, rip)
        got[rip] = b""
    deadline = time.monotonic() + login_timeout + 5
    while len(closed_at) < len(abusers) and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
            rip = key.data
            try:
                chunk = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                chunk = b""
            if chunk:
                got[rip] += chunk
            else:
                closed_at[rip] = time.monotonic()
                sel.unregister(key.fileobj)
    sel.close()
    problems = []
    for rip, (s, t0, what) in abusers.items():
        s.close()
        if rip not in closed_at:
            problems.append(f"{what}: connection still open {login_timeout + 5:.0f}s later")
        elif closed_at[rip] - t0 > login_timeout + 2:
            problems.append(f"{what}: closed only after {closed_at[rip] - t0:.1f}s")
        # No POP3 conversation on a TLS port that never completed a handshake
        # (a TLS alert record is fine).
        if b"+OK" in got[rip] or b"-ERR" in got[rip]:
            problems.append(f"{what}: got a POP3 reply in place of TLS: {got[rip][:200]!r}")
    assert not problems, problems

    # Each connection: one line for the connect, one for its end.
    for rip, (_, _, what) in abusers.items():
        wait_for(lambda: any("event=disconnect" in l for l in log_lines_for(p, rip)), 10,
                 f"the log line for the end of the {what} connection")
    login_unlocked(p.pop3s).close()
    for rip, (_, _, what) in abusers.items():
        lines = log_lines_for(p, rip)
        connects = [l for l in lines if "event=connect" in l]
        others = [l for l in lines if "event=connect" not in l]
        assert len(connects) == 1, (what, lines)
        assert len(others) == 1, (what, lines)
    assert "reason=tls-failed" in log_lines_for(p, "127.0.0.2")[-1]
    assert "reason=tls-failed" in log_lines_for(p, "127.0.0.3")[-1]
    assert "reason=tls-failed" in log_lines_for(p, "127.0.0.5")[-1]
    assert p.pid and p.proc.poll() is None


def test_client_hello_trickled_a_byte_at_a_time_is_served(box):
    """A slow but honest client: the ClientHello arrives in one-byte
    segments. Handshake parsing must be resumable."""
    p, _ = box
    ctx = p.tls_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    s = socket.create_connection(("127.0.0.1", p.pop3s_port), timeout=IO_TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = outgoing.read()
        for b in hello:
            s.sendall(bytes([b]))
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                data = outgoing.read()
                if data:
                    s.sendall(data)
                assert time.monotonic() < deadline, "handshake did not finish"
                chunk = s.recv(65536)
                assert chunk, "server closed during a slow handshake"
                incoming.write(chunk)
        s.sendall(outgoing.read())
        buf = b""
        while b"\r\n" not in buf:
            try:
                buf += obj.read(4096)
            except ssl.SSLWantReadError:
                chunk = s.recv(65536)
                assert chunk, "server closed after the handshake"
                incoming.write(chunk)
        assert buf.startswith(b"+OK"), buf
    finally:
        s.close()


# -- certificate renewal ---------------------------------------------------------


def peer_der(p, how, cadata):
    ctx = ssl.create_default_context(cadata=cadata)
    if how == "pop3s":
        c = Conn(p.pop3s_port, tls=ctx)
    elif how == "stls":
        c = p.stls(context=ctx)
    else:
        c = p.smtp()
        c.ehlo()
        assert c.cmd("STARTTLS").code == 220
        c.starttls(ctx)
    try:
        return c.sock.getpeercert(binary_form=True)
    finally:
        c.close()


def renew(p, serial, org):
    """Put a new certificate and key in place the way certbot's deploy hook
    would: new files renamed over the configured names. Returns the new
    certificate's (path, DER)."""
    new_cert, new_key = make_cert(p.base / f"renewed-{serial}", serial=serial, org=org)
    for src, dst in ((new_cert, p.cert), (new_key, p.key)):
        tmp = Path(str(dst) + ".new")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    os.chmod(p.key, 0o600)
    return new_cert, der_of(new_cert)


def test_reload_picks_up_a_renewed_certificate(box):
    """`pillar reload`, then SIGHUP (what the reload command and systemd's
    ExecReload send): new connections get the renewed certificate, a
    session opened on the old one goes on undisturbed."""
    p, msgs = box
    first_pem = Path(p.cert).read_text()
    first_der = der_of(p.cert)

    # A session on the first certificate, logged in, mid-way through its work.
    old = p.pop3s()
    try:
        assert old.sock.getpeercert(binary_form=True) == first_der
        old.login(USER, PASSWORD)
        assert old.stat()[0] == 3

        second, second_der = renew(p, 4242, "Renewed once")
        assert second_der != first_der
        cadata = first_pem + Path(second).read_text()
        r = p.cli("reload")
        assert r.returncode == 0, r.stderr_text
        wait_for(lambda: peer_der(p, "pop3s", cadata) == second_der, 15,
                 "new POP3S connections to present the renewed certificate")
        assert peer_der(p, "stls", cadata) == second_der
        assert peer_der(p, "smtp", cadata) == second_der

        third, third_der = renew(p, 4343, "Renewed twice")
        cadata += Path(third).read_text()
        p.signal(signal.SIGHUP)
        wait_for(lambda: peer_der(p, "pop3s", cadata) == third_der, 15,
                 "new POP3S connections to present the certificate renewed again")
        assert peer_der(p, "stls", cadata) == third_der

        # The old session goes on undisturbed on its old certificate.
        assert old.sock.getpeercert(binary_form=True) == first_der
        assert old.stat()[0] == 3
        old.ok("RETR 2")
        assert old.multiline() == message_lines(msgs[1][1])
        old.ok("DELE 1")
        reply = old.cmd("QUIT")
        assert reply.startswith(b"+OK"), reply
    finally:
        old.close()
    wait_for(lambda: len(p.files(USER)) == 2, 10, "the DELE to be committed at QUIT")

    # New clients verify against the newest certificate alone.
    with login_unlocked(lambda: Conn(p.pop3s_port,
                                     tls=ssl.create_default_context(cafile=str(third)))) as c:
        assert c.stat()[0] == 2
    assert p.proc.poll() is None


def test_reload_with_a_broken_certificate_keeps_the_old_one(box):
    """A renewal that went wrong (a certificate that does not match the key)
    must not take TLS down: the reload is refused and logged, the workers
    keep running with the pair that works."""
    p, _ = box
    good_der = der_of(p.cert)
    workers = p.workers()
    wrong_cert, _ = make_cert(p.base / "wrong", serial=999)
    shutil.copyfile(wrong_cert, p.cert)  # the key stays the old one: a mismatch
    p.cli("reload", check=False)
    line = wait_for(lambda: next((l for l in p.log().splitlines()
                                  if re.search(r"\breload(ed| refused)\b", l)), None),
                    15, "the reload's outcome in the log")
    assert "reload refused" in line and str(p.key) in line, line
    assert p.workers() == workers
    trust = ssl.create_default_context(cadata=ssl.DER_cert_to_PEM_cert(good_der))
    for make in (lambda: p.pop3s(context=trust), lambda: p.stls(context=trust)):
        with login_unlocked(make) as c:
            assert c.sock.getpeercert(binary_form=True) == good_der
            assert c.stat()[0] == 3
    assert p.proc.poll() is None


def test_sni_picks_the_certificate(make_pillar):
    """Two certificate pairs: the client's SNI name picks the one that
    names it; no SNI, or a name neither has, gets the first (the default)."""
    p = make_pillar(pop3s=True, start=False)
    other_cert, other_key = make_cert(p.base / "sni", serial=5151, cn="mail.example.test",
                                      san="DNS:mail.example.test,DNS:pop.example.test")
    with open(p.conf, "a") as f:
        f.write(f"tls_cert = {other_cert}\ntls_key = {other_key}\n")
    p.start()
    p.add_user(USER, PASSWORD)
    default_der, other_der = der_of(p.cert), der_of(other_cert)

    def seen(name, port, stls=False):
        ctx = ssl.create_default_context(cadata=Path(p.cert).read_text() + Path(other_cert).read_text())
        ctx.check_hostname = False  # we look at which certificate came, not at the name
        if stls:
            c = Conn(port)
            c.ok("STLS")
            c.starttls(ctx, server_hostname=name)
        else:
            c = Conn(port, tls=ctx, server_hostname=name)
        try:
            return c.sock.getpeercert(binary_form=True)
        finally:
            c.close()

    assert seen("mail.example.test", p.pop3s_port) == other_der
    assert seen("pop.example.test", p.pop3s_port) == other_der
    assert seen("MAIL.Example.Test", p.pop3s_port) == other_der  # DNS names ignore case
    assert seen("mail.example.test", p.port, stls=True) == other_der
    assert seen("localhost", p.pop3s_port) == default_der
    assert seen(None, p.pop3s_port) == default_der
    assert seen("unknown.example.org", p.pop3s_port) == default_der
    # And a client that checks the name is satisfied for each name.
    ctx = ssl.create_default_context(cafile=str(other_cert))
    with Conn(p.pop3s_port, tls=ctx, server_hostname="pop.example.test") as c:
        c.login(USER, PASSWORD)
