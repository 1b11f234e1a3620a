"""Authentication: POP3 AUTH (RFC 5034) and SMTP AUTH (RFC 4954) with PLAIN,
LOGIN, SCRAM-SHA-256 (RFC 5802/7677) and SCRAM-SHA-256-PLUS (tls-exporter,
RFC 9266); imported crypt(3) hashes; APOP; the plaintext_auth policy seen
from a real non-loopback address; and the brute-force defences (failure
delay, per-address penalty, failures per connection, connections per
address, no user enumeration).

The SCRAM client here is a test client written from RFC 5802 with hashlib
and hmac. Timing is checked by ordering against a concurrent client and by
comparing measured delays with generous margins, never by sleeping."""

import base64
import ctypes
import ctypes.util
import hashlib
import hmac
import os
import poplib
import re
import secrets
import smtplib
import socket
import ssl
import subprocess
import textwrap
import time

import pytest

from harness import (
    BOB,
    BOB_PASSWORD,
    DOMAIN,
    IO_TIMEOUT,
    PASSWORD,
    USER,
    Conn,
    SmtpConn,
    free_ports,
    mpop,
    simple_message,
    split_trace,
    tool,
    wait_for,
)

NOBODY = "nobody@example.test"
B64 = lambda b: base64.b64encode(b if isinstance(b, bytes) else b.encode()).decode()
FAIL = b"-ERR [AUTH] invalid user name or password"


def needs(name):
    return pytest.mark.skipif(not tool(name), reason=f"{name} not installed")


# -- a SCRAM-SHA-256 client (RFC 5802 §3, §5, §7; RFC 7677) ---------------------


def saslname(s):
    return s.replace("=", "=3D").replace(",", "=2C")


def hmac256(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


class Scram:
    """One SCRAM-SHA-256 exchange. cb_flag is the gs2 channel-binding flag:
    "n" (no support), "y" (client supports it, thinks the server does not)
    or "p=tls-exporter" (SCRAM-SHA-256-PLUS, with cb_data)."""

    def __init__(self, user, password, cb_flag="n", cb_data=b"", authzid=""):
        self.user, self.password = user, password
        self.gs2 = f"{cb_flag},{'a=' + saslname(authzid) if authzid else ''},"
        self.cb_data = cb_data
        self.cnonce = secrets.token_urlsafe(18)
        self.bare = f"n={saslname(user)},r={self.cnonce}"
        self.server_first = None
        self.salt = self.iterations = self.nonce = None

    def first(self) -> bytes:
        return (self.gs2 + self.bare).encode()

    def parse_first(self, msg: bytes):
        self.server_first = msg.decode()
        attrs = dict(a.split("=", 1) for a in self.server_first.split(","))
        self.nonce, self.salt, self.iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        return attrs

    def final(self, server_first: bytes, nonce=None, proof_tamper=False, cbind=None) -> bytes:
        attrs = self.parse_first(server_first)
        assert self.nonce.startswith(self.cnonce), f"server nonce does not extend ours: {attrs}"
        cbind = cbind if cbind is not None else B64(self.gs2.encode() + self.cb_data)
        without_proof = f"c={cbind},r={nonce if nonce is not None else self.nonce}"
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), self.salt, self.iterations)
        client_key = hmac256(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        self.auth_message = f"{self.bare},{self.server_first},{without_proof}".encode()
        signature = hmac256(stored_key, self.auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        if proof_tamper:
            proof = bytes([proof[0] ^ 1]) + proof[1:]
        self.server_key = hmac256(salted, b"Server Key")
        return f"{without_proof},p={B64(proof)}".encode()

    def check_final(self, server_final: bytes):
        want = "v=" + B64(hmac256(self.server_key, self.auth_message))
        assert server_final.decode() == want, (server_final, want)


# -- SASL over POP3 and SMTP ------------------------------------------------------


def pop3_auth(c: Conn, mech, initial=None, answers=(), use_initial=True):
    """AUTH mech with an initial response (bytes; b"" is sent as "=") or
    without, then each answer (bytes, or a callable taking the decoded
    challenge) for each "+ " challenge. Returns (final reply line,
    [decoded challenges])."""
    if initial is not None and use_initial:
        c.send(f"AUTH {mech} {B64(initial) if initial else '='}\r\n")
    else:
        c.send(f"AUTH {mech}\r\n")
    answers = list(answers)
    if initial is not None and not use_initial:
        answers.insert(0, initial)
    challenges = []
    while True:
        line = c.line()
        if not line.startswith(b"+ ") and line != b"+":
            return line, challenges
        challenge = base64.b64decode(line[2:], validate=True)
        challenges.append(challenge)
        assert answers, f"unexpected challenge {challenge!r}"
        answer = answers.pop(0)
        if callable(answer):
            answer = answer(challenge)
        c.send((B64(answer) if answer else "") + "\r\n")


def pop3_scram(c: Conn, user, password, **kw):
    """A whole SCRAM exchange; returns (reply, scram). The server's final
    message (v=...) comes as one more challenge answered with an empty line
    (RFC 5034 §4), and is verified."""
    mech = kw.pop("mech", "SCRAM-SHA-256")
    final_kw = {k: kw.pop(k) for k in ("nonce", "proof_tamper", "cbind") if k in kw}
    s = Scram(user, password, **kw)

    def final(challenge):
        return s.final(challenge, **final_kw)

    def verify(challenge):
        s.check_final(challenge)
        return b""

    reply, challenges = pop3_auth(c, mech, s.first(), [final, verify])
    return reply, s


def smtp_auth(c: SmtpConn, mech, initial=None, answers=()):
    """The same for SMTP (334 challenges). Returns (final reply, challenges)."""
    if initial is not None:
        c.send(f"AUTH {mech} {B64(initial) if initial else '='}\r\n")
    else:
        c.send(f"AUTH {mech}\r\n")
    answers = list(answers)
    challenges = []
    while True:
        r = c.reply()
        if r.code != 334:
            return r, challenges
        challenge = base64.b64decode(r.lines[0], validate=True)
        challenges.append(challenge)
        assert answers, f"unexpected challenge {challenge!r}"
        answer = answers.pop(0)
        if callable(answer):
            answer = answer(challenge)
        c.send((B64(answer) if answer else "") + "\r\n")


def smtp_scram(c: SmtpConn, user, password, mech="SCRAM-SHA-256", **kw):
    s = Scram(user, password, **kw)

    def verify(challenge):
        s.check_final(challenge)
        return b""

    return smtp_auth(c, mech, s.first(), [lambda ch: s.final(ch), verify])[0], s


def plain(authcid, password, authzid=""):
    return f"{authzid}\0{authcid}\0{password}".encode()


def capa(c: Conn):
    assert c.cmd("CAPA").startswith(b"+OK")
    return [l.decode() for l in c.multiline()]


def sasl_capa(c: Conn):
    """The mechanisms of CAPA's SASL line, in order ([] without the line)."""
    for line in capa(c):
        words = line.split()
        if words[0].upper() == "SASL":
            return words[1:]
    return []


def auth_list(c: Conn):
    """AUTH with no argument: the mechanisms, one a line."""
    reply = c.cmd("AUTH")
    assert reply.startswith(b"+OK"), reply
    return [l.decode() for l in c.multiline()]


def logged_in(c: Conn):
    """Whether the connection is in TRANSACTION state (STAT works)."""
    return c.cmd("STAT").startswith(b"+OK")


# -- tls-exporter from Python --------------------------------------------------


def _libssl():
    """The libssl the ssl module itself uses, found in this process's map."""
    with open("/proc/self/maps") as f:
        paths = set(re.findall(r"(/\S*libssl\.so[.\d]*)", f.read()))
    if len(paths) != 1:
        return None
    lib = ctypes.CDLL(paths.pop())
    lib.SSL_get_version.restype = ctypes.c_char_p
    lib.SSL_get_version.argtypes = [ctypes.c_void_p]
    lib.SSL_is_server.argtypes = [ctypes.c_void_p]
    lib.SSL_export_keying_material.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
    return lib


def tls_exporter(sock: ssl.SSLSocket) -> bytes:
    """RFC 9266 tls-exporter channel binding of a client TLS 1.3 connection.

    Python's ssl module offers only "tls-unique" (undefined for TLS 1.3), so
    this calls SSL_export_keying_material on the connection's SSL object. The
    SSL pointer is read from CPython's _ssl._SSLSocket (the field after the
    object header and the socket weakref), and checked against the version
    and role Python reports before it is trusted; a mismatch skips the test."""
    lib = _libssl()
    if lib is None:
        pytest.skip("tls-exporter: cannot tell which libssl the ssl module uses")
    # struct PySSLSocket { PyObject_HEAD; PyObject *Socket; SSL *ssl; ... }
    offset = ctypes.sizeof(ctypes.c_ssize_t) + 2 * ctypes.sizeof(ctypes.c_void_p)
    ptr = ctypes.c_void_p.from_address(id(sock._sslobj) + offset).value
    if not ptr or lib.SSL_get_version(ptr).decode() != sock.version() or lib.SSL_is_server(ptr) != 0:
        pytest.skip("tls-exporter: this Python's _ssl layout is not the one expected; "
                    "cannot reach SSL_export_keying_material")
    out = ctypes.create_string_buffer(32)
    label = b"EXPORTER-Channel-Binding"
    assert lib.SSL_export_keying_material(ptr, out, 32, label, len(label), None, 0, 0) == 1
    return out.raw


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture
def box(make_pillar):
    """POP3 (STLS), POP3S and SMTP, with alice (one message) and bob."""
    p = make_pillar(pop3s=True, smtp=True)
    p.add_user(USER, PASSWORD)
    p.add_user(BOB, BOB_PASSWORD)
    p.deliver(USER, simple_message(1))
    return p


def has_smtp_auth(p):
    c = p.smtp()
    try:
        return "AUTH" in c.keywords(c.ehlo())
    finally:
        c.close()


def tls13(p):
    return p.tls_context(ssl.TLSVersion.TLSv1_3)


# -- POP3 AUTH: the mechanisms offered --------------------------------------------


def test_auth_lists_the_same_mechanisms_as_capa(box):
    p = box
    with p.conn() as c:
        mechs = sasl_capa(c)
        assert auth_list(c) == mechs
        # Loopback counts as secure: PLAIN and LOGIN are usable; -PLUS needs
        # TLS 1.3.
        assert set(mechs) == {"SCRAM-SHA-256", "PLAIN", "LOGIN"}, mechs
    c = p.stls(context=tls13(p))
    try:
        mechs = sasl_capa(c)
        assert auth_list(c) == mechs
        assert set(mechs) == {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"}, mechs
    finally:
        c.close()
    with p.pop3s(context=p.tls_context(ssl.TLSVersion.TLSv1_2)) as c:
        # TLS 1.2 has no tls-exporter binding (RFC 9266 §3): no -PLUS.
        mechs = sasl_capa(c)
        assert set(mechs) == {"SCRAM-SHA-256", "PLAIN", "LOGIN"}, mechs
        reply, _ = pop3_auth(c, "SCRAM-SHA-256-PLUS", b"p=tls-exporter,,n=x,r=abc")
        assert reply.startswith(b"-ERR"), reply


def test_unknown_mechanisms_are_refused(box):
    p = box
    with p.conn() as c:
        for mech in ("CRAM-MD5", "DIGEST-MD5", "GSSAPI", "X-NOPE", "SCRAM-SHA-1"):
            reply = c.cmd(f"AUTH {mech}")
            assert reply.startswith(b"-ERR"), (mech, reply)
        c.login(USER, PASSWORD)


# -- POP3 AUTH PLAIN and LOGIN ----------------------------------------------------


def test_auth_plain_with_initial_response(box):
    p = box
    with p.conn() as c:
        reply, challenges = pop3_auth(c, "PLAIN", plain(USER, PASSWORD))
        assert reply.startswith(b"+OK"), reply
        assert challenges == []
        assert c.stat()[0] == 1


def test_auth_plain_without_initial_response(box):
    p = box
    with p.pop3s() as c:
        reply, challenges = pop3_auth(c, "PLAIN", plain(USER, PASSWORD), use_initial=False)
        assert reply.startswith(b"+OK"), reply
        assert challenges == [b""]  # RFC 4616: the server's challenge is empty
        assert c.stat()[0] == 1


def test_auth_plain_mechanism_name_is_case_insensitive(box):
    p = box
    with p.conn() as c:
        reply, _ = pop3_auth(c, "plain", plain(USER, PASSWORD))
        assert reply.startswith(b"+OK"), reply


def test_auth_plain_authzid_equal_to_authcid_is_accepted(box):
    p = box
    with p.conn() as c:
        reply, _ = pop3_auth(c, "PLAIN", plain(USER, PASSWORD, authzid=USER))
        assert reply.startswith(b"+OK"), reply


def test_auth_plain_authzid_of_someone_else_is_refused(box):
    """Right password for alice, asking to act as bob: refused, and nobody
    is logged in."""
    p = box
    with p.conn() as c:
        reply, _ = pop3_auth(c, "PLAIN", plain(USER, PASSWORD, authzid=BOB))
        assert reply.startswith(b"-ERR"), reply
        assert not logged_in(c)
    assert "event=login" not in p.log()


def test_auth_login(box):
    p = box
    with p.pop3s() as c:
        reply, challenges = pop3_auth(c, "LOGIN", None, [USER.encode(), PASSWORD.encode()])
        assert reply.startswith(b"+OK"), reply
        assert len(challenges) == 2
        assert c.stat()[0] == 1


def test_auth_login_wrong_password(box):
    p = box
    with p.conn() as c:
        reply, _ = pop3_auth(c, "LOGIN", None, [USER.encode(), b"wrong"])
        assert reply == FAIL
        assert not logged_in(c)


def test_auth_cancel(box):
    """"*" cancels (RFC 5034 §4): -ERR, at once, and it is not a failed
    login: three cancels leave the connection open for a real login."""
    p = box
    with p.conn() as c:
        for mech, ir in (("PLAIN", None), ("LOGIN", None), ("SCRAM-SHA-256", Scram(USER, "x").first())):
            c.send(f"AUTH {mech}" + (f" {B64(ir)}" if ir else "") + "\r\n")
            line = c.line()
            assert line.startswith(b"+"), (mech, line)
            reply = c.cmd("*")
            assert reply.startswith(b"-ERR"), (mech, reply)
        reply, _ = pop3_auth(c, "PLAIN", plain(USER, PASSWORD))
        assert reply.startswith(b"+OK"), reply
    assert "auth failed" not in p.log()


@pytest.mark.parametrize(
    "what,line",
    [
        ("not base64", "AUTH PLAIN !!!not-base64!!!"),
        ("bad padding", "AUTH PLAIN " + B64(plain(USER, PASSWORD)).rstrip("=") + "="),
        ("padding in the middle", "AUTH PLAIN AA==" + B64(plain(USER, PASSWORD))),
        ("empty response", "AUTH PLAIN ="),
        ("one NUL only", "AUTH PLAIN " + B64(f"{USER}\0{PASSWORD}")),
        ("NUL inside the authcid", "AUTH PLAIN " + B64(f"\0alice\0@example.test\0{PASSWORD}")),
        ("NUL inside the password", "AUTH PLAIN " + B64(f"\0{USER}\0{PASSWORD}\0x")),
        ("empty authcid", "AUTH PLAIN " + B64(f"\0\0{PASSWORD}")),
        ("over-long token", "AUTH PLAIN " + B64(b"\0" + USER.encode() + b"\0" + b"x" * 3000)),
    ],
)
def test_auth_plain_malformed(box, what, line):
    p = box
    with p.conn() as c:
        reply = c.cmd(line)
        assert reply.startswith(b"-ERR"), (what, reply)
        assert not logged_in(c), what
        # The connection survives and a good login still works.
        reply, _ = pop3_auth(c, "PLAIN", plain(USER, PASSWORD))
        assert reply.startswith(b"+OK"), (what, reply)


def test_auth_malformed_challenge_answer(box):
    p = box
    with p.conn() as c:
        c.send("AUTH PLAIN\r\n")
        assert c.line().startswith(b"+")
        reply = c.cmd("%%%")
        assert reply.startswith(b"-ERR"), reply
        assert not logged_in(c)


# -- SCRAM-SHA-256 ----------------------------------------------------------------


def test_scram_sha_256(box):
    p = box
    with p.conn() as c:
        reply, s = pop3_scram(c, USER, PASSWORD)
        assert reply.startswith(b"+OK"), reply
        assert c.stat()[0] == 1
        # RFC 7677 §4: at least 4096 iterations; a real random salt.
        assert s.iterations >= 4096, s.iterations
        assert len(s.salt) >= 16, s.salt


def test_scram_sha_256_over_tls12(box):
    p = box
    with p.pop3s(context=p.tls_context(ssl.TLSVersion.TLSv1_2)) as c:
        reply, _ = pop3_scram(c, USER, PASSWORD)
        assert reply.startswith(b"+OK"), reply


def test_scram_wrong_password(box):
    p = box
    with p.conn() as c:
        s = Scram(USER, "wrong")
        reply, challenges = pop3_auth(c, "SCRAM-SHA-256", s.first(), [lambda ch: s.final(ch)])
        assert reply == FAIL, reply
        assert len(challenges) == 1
        assert not logged_in(c)


def test_scram_bad_proof(box):
    """RFC 5802 §5.1: a proof that does not verify fails the exchange."""
    p = box
    with p.conn() as c:
        s = Scram(USER, PASSWORD)
        reply, _ = pop3_auth(c, "SCRAM-SHA-256", s.first(),
                             [lambda ch: s.final(ch, proof_tamper=True)])
        assert reply.startswith(b"-ERR"), reply
        assert not logged_in(c)


@pytest.mark.parametrize("how", ["client part only", "other server part", "truncated"])
def test_scram_bad_nonce(box, how):
    """RFC 5802 §5.1: the client-final nonce must be the server's combined
    nonce exactly."""
    p = box
    with p.conn() as c:
        s = Scram(USER, PASSWORD)

        def final(ch):
            s.parse_first(ch)
            nonce = {"client part only": s.cnonce,
                     "other server part": s.cnonce + "X" * (len(s.nonce) - len(s.cnonce)),
                     "truncated": s.nonce[:-1]}[how]
            return s.final(ch, nonce=nonce)

        reply, _ = pop3_auth(c, "SCRAM-SHA-256", s.first(), [final])
        assert reply.startswith(b"-ERR"), reply
        assert not logged_in(c)


def test_scram_channel_binding_mismatch_in_c(box):
    """The c= attribute must repeat the gs2 header of client-first."""
    p = box
    with p.conn() as c:
        reply, _ = pop3_scram(c, USER, PASSWORD, cbind=B64(b"y,,"))
        assert reply.startswith(b"-ERR"), reply


def test_scram_y_flag_without_tls_is_accepted(box):
    """'y': the client could bind but believes the server cannot. Without
    TLS the server offers no -PLUS, so that belief is right."""
    p = box
    with p.conn() as c:
        assert "SCRAM-SHA-256-PLUS" not in sasl_capa(c)
        reply, _ = pop3_scram(c, USER, PASSWORD, cb_flag="y")
        assert reply.startswith(b"+OK"), reply


def test_scram_y_flag_under_tls13_is_a_downgrade(box):
    """Under TLS 1.3 the server does offer -PLUS, so a client that says 'y'
    has been downgraded by someone in the middle (RFC 5802 §6): fail."""
    p = box
    with p.pop3s(context=tls13(p)) as c:
        assert "SCRAM-SHA-256-PLUS" in sasl_capa(c)
        reply, _ = pop3_scram(c, USER, PASSWORD, cb_flag="y")
        assert reply.startswith(b"-ERR"), reply


def test_scram_p_flag_with_the_non_plus_mechanism_is_refused(box):
    p = box
    with p.pop3s(context=tls13(p)) as c:
        cb = tls_exporter(c.sock)
        reply, _ = pop3_scram(c, USER, PASSWORD, cb_flag="p=tls-exporter", cb_data=cb)
        assert reply.startswith(b"-ERR"), reply


def test_scram_authzid_of_someone_else_is_refused(box):
    p = box
    with p.conn() as c:
        reply, _ = pop3_scram(c, USER, PASSWORD, authzid=BOB)
        assert reply.startswith(b"-ERR"), reply
        assert not logged_in(c)


@pytest.mark.parametrize("how", ["pop3s", "stls"])
def test_scram_sha_256_plus_tls_exporter(box, how):
    p = box
    c = p.pop3s(context=tls13(p)) if how == "pop3s" else p.stls(context=tls13(p))
    try:
        assert c.sock.version() == "TLSv1.3"
        cb = tls_exporter(c.sock)
        reply, _ = pop3_scram(c, USER, PASSWORD, mech="SCRAM-SHA-256-PLUS",
                              cb_flag="p=tls-exporter", cb_data=cb)
        assert reply.startswith(b"+OK"), reply
        assert c.stat()[0] == 1
    finally:
        c.close()


def test_scram_sha_256_plus_wrong_binding_is_refused(box):
    """Binding data from another TLS session (what a man in the middle
    would have) fails the exchange."""
    p = box
    with p.pop3s(context=tls13(p)) as other:
        foreign = tls_exporter(other.sock)
    with p.pop3s(context=tls13(p)) as c:
        assert tls_exporter(c.sock) != foreign
        reply, _ = pop3_scram(c, USER, PASSWORD, mech="SCRAM-SHA-256-PLUS",
                              cb_flag="p=tls-exporter", cb_data=foreign)
        assert reply.startswith(b"-ERR"), reply
        assert not logged_in(c)


@pytest.mark.parametrize("cbtype", ["tls-unique", "tls-server-end-point"])
def test_scram_sha_256_plus_other_binding_types_are_refused(box, cbtype):
    p = box
    with p.pop3s(context=tls13(p)) as c:
        reply, _ = pop3_scram(c, USER, PASSWORD, mech="SCRAM-SHA-256-PLUS",
                              cb_flag=f"p={cbtype}", cb_data=b"\0" * 32)
        assert reply.startswith(b"-ERR"), reply


def test_scram_sha_256_plus_without_tls_is_not_offered(box):
    p = box
    with p.conn() as c:
        reply, _ = pop3_auth(c, "SCRAM-SHA-256-PLUS", b"p=tls-exporter,,n=x,r=abc")
        assert reply.startswith(b"-ERR"), reply


def test_scram_unknown_user_looks_like_a_real_one(box):
    """No enumeration through SCRAM: an unknown user gets a server-first
    message like a real user's, with a salt that is the same each time (a
    salt that changed would tell), and fails only at the proof, with the
    same reply as a wrong password."""
    p = box
    firsts = []
    replies = []
    for user, password in ((NOBODY, "x"), (NOBODY, "x"), (USER, "wrong")):
        with Conn(p.port, source="127.0.0.%d" % (20 + len(firsts))) as c:
            s = Scram(user, password)
            reply, challenges = pop3_auth(c, "SCRAM-SHA-256", s.first(), [lambda ch: s.final(ch)])
            firsts.append(s)
            replies.append(reply)
    assert firsts[0].salt == firsts[1].salt
    assert firsts[0].iterations == firsts[2].iterations
    assert len(firsts[0].salt) == len(firsts[2].salt)
    assert replies[0] == replies[1] == replies[2] == FAIL, replies


# -- mpop with SASL -----------------------------------------------------------------


@needs("mpop")
@pytest.mark.parametrize("starttls", [True, False], ids=["stls", "pop3s"])
@pytest.mark.parametrize("auth", ["scram-sha-256", "plain"])
def test_mpop_sasl(box, tmp_path, starttls, auth):
    p = box
    r = mpop(p, tmp_path, p.port if starttls else p.pop3s_port,
             "stls" if starttls else "pop3s", auth)
    assert r.returncode == 0, r.log
    assert re.search(rf"^--> AUTH {auth.upper()}\b", r.log, re.M), r.log
    assert len(r.blobs) == 1 and b"Subject: test message 1" in r.blobs[0], r.log


# -- imported password hashes ------------------------------------------------------


def _libcrypt():
    name = ctypes.util.find_library("crypt")
    if not name:
        pytest.skip("libcrypt not found")
    lib = ctypes.CDLL(name)
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    return lib


def crypt_hash(kind, password):
    """A crypt(3) hash of password made outside Pillar: openssl passwd for
    the SHA-crypt kinds, libxcrypt (through ctypes) for bcrypt and
    yescrypt."""
    if kind in ("sha512-crypt", "sha256-crypt"):
        r = subprocess.run([tool("openssl"), "passwd", "-6" if kind == "sha512-crypt" else "-5",
                            "-stdin"], input=password.encode(), capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout.decode().strip()
    lib = _libcrypt()
    prefix = {"bcrypt": b"$2b$", "yescrypt": b"$y$"}[kind]
    salt = lib.crypt_gensalt(prefix, 0, None, 0)
    assert salt, f"libcrypt cannot make a {kind} salt"
    out = lib.crypt(password.encode(), salt)
    assert out and out.startswith(prefix), out
    return out.decode()


HASH_PREFIX = {"sha512-crypt": "$6$", "sha256-crypt": "$5$", "bcrypt": "$2b$", "yescrypt": "$y$"}


def scram_login_when_unlocked(p, user, password, source, timeout=10):
    """SCRAM login, retrying only while the mailbox is still [IN-USE] from a
    session that just ended. Returns the reply."""
    deadline = time.monotonic() + timeout
    while True:
        with Conn(p.port, source=source) as c:
            reply, _ = pop3_scram(c, user, password)
        if b"[IN-USE]" not in reply or time.monotonic() > deadline:
            return reply
        time.sleep(0.05)


@pytest.mark.parametrize("kind", list(HASH_PREFIX))
def test_imported_hash(make_pillar, kind):
    """A mailbox moved from another server with its crypt(3) hash logs in
    with USER/PASS and PLAIN; SCRAM needs keys that can only be made from
    the password, so it works after the first successful plaintext login."""
    p = make_pillar(auth_failure_delay="100ms")
    address = f"moved@{DOMAIN}"
    password = "Moved-Pass-9"
    h = crypt_hash(kind, password)
    assert h.startswith(HASH_PREFIX[kind])
    p.cli("user", "add", address, "--password-hash", h)
    p.deliver(address, simple_message(1))

    # Before any plaintext login: no SCRAM keys, so SCRAM fails.
    with Conn(p.port, source="127.0.0.30") as c:
        reply, _ = pop3_scram(c, address, password)
        assert reply == FAIL, reply
    # A wrong password is still wrong.
    with Conn(p.port, source="127.0.0.31") as c:
        c.ok(f"USER {address}")
        assert c.cmd("PASS wrong") == FAIL
    # The right one works with PLAIN...
    with Conn(p.port, source="127.0.0.32") as c:
        reply, _ = pop3_auth(c, "PLAIN", plain(address, password))
        assert reply.startswith(b"+OK"), reply
        assert c.stat()[0] == 1
        c.ok("QUIT")
    # ...and with USER/PASS.
    c = p.wait_unlocked(address, password)
    c.ok("QUIT")
    c.close()
    # Now SCRAM works too.
    reply = scram_login_when_unlocked(p, address, password, "127.0.0.33")
    assert reply.startswith(b"+OK"), reply


def test_imported_hash_scram_keys_follow_user_pass(make_pillar):
    """USER/PASS's +OK does not wait for the SCRAM keys of an imported hash:
    the auth process derives and stores them just after the reply. They
    come all the same, made from the password that was right, and a
    SCRAM login works with them."""
    p = make_pillar(auth_failure_delay="100ms")
    address = f"later@{DOMAIN}"
    password = "Later-Pass-4"
    p.cli("user", "add", address, "--password-hash", crypt_hash("sha512-crypt", password))
    with Conn(p.port, source="127.0.0.40") as c:
        c.ok(f"USER {address}")
        assert c.cmd(f"PASS {password}").startswith(b"+OK")
        c.ok("QUIT")
    deadline = time.monotonic() + 10
    attempt = 0
    while True:
        attempt += 1
        reply = scram_login_when_unlocked(p, address, password, f"127.0.1.{attempt}")
        if reply.startswith(b"+OK") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert reply.startswith(b"+OK"), reply
    # Derived from the right password only: a wrong one still fails.
    with Conn(p.port, source="127.0.0.41") as c:
        assert pop3_scram(c, address, "Later-Pass-5")[0] == FAIL


def test_imported_hash_rejects_garbage(make_pillar):
    """Only hashes that can ever verify a password are taken: not a
    password, not an unsupported kind (MD5-crypt), and not a supported
    prefix with the salt or the hash missing (a mailbox nobody could log
    in to, added without a word)."""
    p = make_pillar(start=False)
    bad = ["plaintext-password", "$1$abc$defghijklmnopqrstuv", "*", "!", "",
           "$6$", "$6$salt$", "$5$salt$", "$6$rounds=5000$salt$short", "$2b$", "$2b$05$",
           "$y$", "$y$j9T$"]
    accepted = []
    for h in bad:
        r = p.cli("user", "add", f"bad@{DOMAIN}", "--password-hash", h, check=False)
        if r.returncode == 0:
            accepted.append(h)
            p.cli("user", "del", f"bad@{DOMAIN}", "--purge")
        else:
            assert r.stderr_text.strip(), h
    assert accepted == [], f"malformed hashes accepted by user add --password-hash: {accepted}"


def test_passwd_makes_scram_keys(box):
    """pillar user passwd stores fresh SCRAM keys: the old password stops
    working for SCRAM at once, the new one works."""
    p = box
    new = "alice-New-Secret-2"
    p.cli("user", "passwd", USER, "--password-stdin", input=new + "\n")
    with Conn(p.port, source="127.0.0.40") as c:
        reply, _ = pop3_scram(c, USER, PASSWORD)
        assert reply == FAIL, reply
    with Conn(p.port, source="127.0.0.41") as c:
        reply, _ = pop3_scram(c, USER, new)
        assert reply.startswith(b"+OK"), reply


# -- APOP ---------------------------------------------------------------------------


APOP_TS = re.compile(rb"(<[\x21-\x7e]+@[\x21-\x7e]+>)")


def test_apop_disabled_by_default(box):
    p = box
    with p.conn() as c:
        assert not APOP_TS.search(c.greeting), c.greeting
        reply = c.cmd(f"APOP {USER} " + "0" * 32)
        assert reply.startswith(b"-ERR"), reply
        assert not logged_in(c)


def test_apop_opt_in(make_pillar):
    p = make_pillar(apop="yes", hostname="mail.example.test")
    p.add_user(USER, PASSWORD)
    p.add_user(BOB, BOB_PASSWORD)
    p.deliver(USER, simple_message(1))
    r = p.cli("user", "passwd", USER, "--password-stdin", "--apop", input=PASSWORD + "\n")
    assert re.search(r"plain", r.stderr_text, re.I), r.stderr_text  # it warns
    if (p.conf_value("directory") or "sqlite") == "sqlite":  # where it is
        assert str(p.dir / "auth" / "secrets.db") in r.stderr_text

    client = poplib.POP3("127.0.0.1", p.port, timeout=IO_TIMEOUT)
    try:
        m = APOP_TS.search(client.welcome)
        assert m, client.welcome
        assert m.group(1).endswith(b"@mail.example.test>"), client.welcome
        assert client.apop(USER, PASSWORD).startswith(b"+OK")
        assert client.stat()[0] == 1
        client.quit()
    finally:
        client.close()

    # Each greeting has its own timestamp.
    with p.conn() as a, p.conn() as b:
        assert APOP_TS.search(a.greeting).group(1) != APOP_TS.search(b.greeting).group(1)

    def apop(user, secret, source):
        with Conn(p.port, source=source) as c:
            ts = APOP_TS.search(c.greeting).group(1)
            digest = hashlib.md5(ts + secret.encode()).hexdigest()
            return c.cmd(f"APOP {user} {digest}")

    # Wrong secret, a user who did not opt in (right password), and an
    # unknown user: the same reply.
    replies = [apop(USER, "wrong", "127.0.0.50"), apop(BOB, BOB_PASSWORD, "127.0.0.51"),
               apop(NOBODY, "x", "127.0.0.52")]
    assert all(r.startswith(b"-ERR") for r in replies), replies
    assert len(set(replies)) == 1, replies

    # Without --apop on the next passwd, the secret is gone.
    p.cli("user", "passwd", USER, "--password-stdin", input=PASSWORD + "\n")
    reply = apop(USER, PASSWORD, "127.0.0.53")
    assert reply.startswith(b"-ERR"), reply


@needs("mpop")
def test_mpop_apop(make_pillar, tmp_path):
    p = make_pillar(apop="yes")
    p.add_user(USER, PASSWORD)
    p.cli("user", "passwd", USER, "--password-stdin", "--apop", input=PASSWORD + "\n")
    p.deliver(USER, simple_message(1))
    conf = tmp_path / "mpoprc"
    maildir = tmp_path / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    conf.write_text(textwrap.dedent(f"""\
        account pillar
        host 127.0.0.1
        port {p.port}
        tls off
        auth apop
        user {USER}
        password {PASSWORD}
        keep on
        uidls_file {tmp_path / "uidls"}
        delivery maildir {maildir}
        """))
    os.chmod(conf, 0o600)
    r = subprocess.run([tool("mpop"), "-C", str(conf), "-d", "pillar"], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=60, env=dict(os.environ, HOME=str(tmp_path)))
    log = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, log
    assert re.search(r"^--> APOP ", log, re.M), log
    assert len(list((maildir / "new").iterdir())) == 1


# -- SMTP AUTH ------------------------------------------------------------------------


@pytest.fixture
def smtp_box(box):
    assert has_smtp_auth(box), "EHLO does not offer AUTH"
    return box


def test_smtp_ehlo_auth_mechanisms(smtp_box):
    p = smtp_box
    c = p.smtp()
    try:
        mechs = c.keywords(c.ehlo())["AUTH"]
        assert set(mechs) == {"SCRAM-SHA-256", "PLAIN", "LOGIN"}, mechs
        assert c.cmd("STARTTLS").code == 220
        c.starttls(tls13(p))
        mechs = c.keywords(c.ehlo())["AUTH"]
        assert set(mechs) == {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"}, mechs
    finally:
        c.close()


@pytest.mark.parametrize("mech,tls", [("PLAIN", True), ("LOGIN", True), ("PLAIN", False),
                                      ("LOGIN", False)])
def test_smtplib_auth(smtp_box, mech, tls):
    """smtplib's AUTH PLAIN (initial response) and LOGIN (two challenges),
    with and without STARTTLS (loopback allows plaintext mechanisms); the
    Received: line says ESMTPA or ESMTPSA (RFC 3848)."""
    p = smtp_box
    s = p.smtplib()
    try:
        if tls:
            s.starttls(context=p.tls_context())
        s.ehlo()
        s.user, s.password = USER, PASSWORD  # what smtplib's auth objects read
        auth = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login}[mech]
        code, _ = s.auth(mech, auth, initial_response_ok=(mech == "PLAIN"))
        assert code == 235, (mech, code)
        subject = f"authenticated {mech} tls={tls}"
        assert s.sendmail("carol@example.org", [BOB], f"Subject: {subject}\r\n\r\nhi\r\n") == {}
        stored = [b for b in p.wait_stored(BOB, 1) if subject.encode() in b]
        assert len(stored) == 1
        _, received, _ = split_trace(stored[0])
        want = rb"\bwith ESMTPSA\b" if tls else rb"\bwith ESMTPA\b"
        assert re.search(want, received), received
        s.quit()
    finally:
        s.close()


def test_smtplib_wrong_password(smtp_box):
    p = smtp_box
    s = p.smtplib()
    try:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login(USER, "wrong")
        assert e.value.smtp_code == 535
    finally:
        s.close()


def test_smtp_auth_plain_without_initial_response_and_cancel(smtp_box):
    p = smtp_box
    c = p.smtp()
    try:
        c.ehlo()
        c.send("AUTH PLAIN\r\n")
        r = c.reply()
        assert r.code == 334 and r.lines == [b""], r
        r = c.cmd("*")
        assert r.code == 501, r
        r, challenges = smtp_auth(c, "PLAIN", None, [plain(USER, PASSWORD)])
        assert r.code == 235, r
        r = c.cmd("AUTH PLAIN " + B64(plain(USER, PASSWORD)))
        assert r.code == 503, r  # RFC 4954 §4: once only
    finally:
        c.close()


@pytest.mark.parametrize("line", [
    "AUTH PLAIN !!!",
    "AUTH PLAIN =",
    "AUTH PLAIN " + B64(plain(USER, PASSWORD, authzid=BOB)),
    "AUTH PLAIN " + B64(f"\0al\0ice@example.test\0{PASSWORD}"),
])
def test_smtp_auth_malformed(smtp_box, line):
    p = smtp_box
    c = p.smtp()
    try:
        c.ehlo()
        r = c.cmd(line)
        assert 500 <= r.code < 600, r
        r, _ = smtp_auth(c, "PLAIN", plain(USER, PASSWORD))
        assert r.code == 235, r
    finally:
        c.close()


def test_smtp_scram_and_scram_plus(smtp_box):
    p = smtp_box
    c = p.smtp()
    try:
        c.ehlo()
        r, _ = smtp_scram(c, USER, PASSWORD)
        assert r.code == 235, r
    finally:
        c.close()
    c = p.smtp()
    try:
        c.ehlo()
        assert c.cmd("STARTTLS").code == 220
        c.starttls(tls13(p))
        c.ehlo()
        r, _ = smtp_scram(c, USER, PASSWORD, mech="SCRAM-SHA-256-PLUS", cb_flag="p=tls-exporter",
                          cb_data=tls_exporter(c.sock))
        assert r.code == 235, r
    finally:
        c.close()
    c = p.smtp()
    try:
        c.ehlo()
        r, _ = smtp_scram(c, USER, "wrong")
        assert r.code == 535, r
    finally:
        c.close()


def test_smtp_three_auth_failures_close_the_session(make_pillar):
    p = make_pillar(smtp=True, auth_failure_delay="50ms")
    p.add_user(USER, PASSWORD)
    assert has_smtp_auth(p), "EHLO does not offer AUTH"
    c = p.smtp()
    try:
        c.ehlo()
        for i in range(2):
            r = c.cmd("AUTH PLAIN " + B64(plain(USER, f"wrong{i}")))
            assert r.code == 535, r
        c.send("AUTH PLAIN " + B64(plain(USER, "wrong2")) + "\r\n")
        assert c.reply().code == 535
        assert c.reply().code == 421
        assert c.read_to_eof() == b""
    finally:
        c.close()


# -- plaintext_auth from a real non-loopback address ------------------------------


class NetNS:
    """A network namespace joined to this one by a veth pair: the server
    listens on host_addr, clients inside the namespace come from
    client_addr, which is not loopback."""

    CLONE_NEWNET = 0x40000000

    def __init__(self, name, host_if, subnet):
        self.name, self.host_if = name, host_if
        self.host_addr, self.client_addr = f"{subnet}.1", f"{subnet}.2"
        self.libc = ctypes.CDLL(None, use_errno=True)

    def socket(self):
        """A TCP socket created inside the namespace (its connections leave
        from there), made by switching this thread into it for the call."""
        with open(f"/var/run/netns/{self.name}") as ns, open("/proc/self/ns/net") as home:
            if self.libc.setns(ns.fileno(), self.CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the test namespace")
            try:
                return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            finally:
                if self.libc.setns(home.fileno(), self.CLONE_NEWNET) != 0:
                    os._exit(99)  # cannot get back: nothing sane can follow

    def connect(self, port, timeout=IO_TIMEOUT):
        s = self.socket()
        s.settimeout(timeout)
        s.connect((self.host_addr, port))
        return s

    def pop3(self, port, **kw) -> Conn:
        return Conn(port, sock=self.connect(port), **kw)

    def smtp(self, port, **kw) -> SmtpConn:
        return SmtpConn(port, sock=self.connect(port), **kw)

    def run(self, argv, **kw):
        return subprocess.run([tool("ip"), "netns", "exec", self.name, *argv], **kw)


def _ip(*args):
    return subprocess.run([tool("ip") or "ip", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def netns():
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace (ip netns add) needs root")
    if not tool("ip"):
        pytest.skip("iproute2 (ip) not installed")
    tag = f"{os.getpid() % 100000}"
    name, host_if, peer_if = f"pillar-it-{tag}", f"plh{tag}", f"plc{tag}"
    used = _ip("-o", "-4", "addr").stdout
    subnet = next((f"10.200.{i}" for i in range(1 + os.getpid() % 200, 255)
                   if f" 10.200.{i}." not in used), None)
    assert subnet, "no free 10.200.x.0/24 subnet for the test namespace"
    steps = [
        ("netns", "add", name),
        ("link", "add", host_if, "type", "veth", "peer", "name", peer_if),
        ("link", "set", peer_if, "netns", name),
        ("addr", "add", f"{subnet}.1/24", "dev", host_if),
        ("link", "set", host_if, "up"),
        ("-n", name, "addr", "add", f"{subnet}.2/24", "dev", peer_if),
        ("-n", name, "link", "set", peer_if, "up"),
        ("-n", name, "link", "set", "lo", "up"),
    ]
    try:
        for step in steps:
            r = _ip(*step)
            if r.returncode != 0:
                if step[0] == "netns" and "ermission" in r.stderr:
                    pytest.skip(f"network namespaces not permitted here: ip {' '.join(step)}: "
                                f"{r.stderr.strip()}")
                raise AssertionError(f"ip {' '.join(step)} failed: {r.stderr.strip()}")
        ns = NetNS(name, host_if, subnet)
        # The host address must be usable before a server binds it.
        s = ns.socket()
        s.close()
        yield ns
    finally:
        _ip("netns", "del", name)
        _ip("link", "del", host_if)


def remote_box(make_pillar, netns, **settings):
    """An instance that also listens for POP3 and SMTP on the host end of
    the veth pair. Returns (pillar, pop3 port, smtp port) for clients in the
    namespace."""
    p = make_pillar(start=False, pop3s=True, smtp=True, **settings)
    pop3_port, smtp_port = free_ports(2)
    p.add_listener("pop3_listen", f"{netns.host_addr}:{pop3_port}")
    p.add_listener("smtp_listen", f"{netns.host_addr}:{smtp_port}")
    p.start()
    p.add_user(USER, PASSWORD)
    p.deliver(USER, simple_message(1))
    return p, pop3_port, smtp_port


def test_plaintext_auth_tls_from_a_remote_address(make_pillar, netns):
    p, port, smtp_port = remote_box(make_pillar, netns)
    with netns.pop3(port) as c:
        caps = capa(c)
        assert "USER" not in caps, caps
        assert "STLS" in caps, caps
        mechs = sasl_capa(c)
        assert mechs == ["SCRAM-SHA-256"], mechs
        assert auth_list(c) == mechs
        reply = c.cmd(f"USER {USER}")
        assert reply.startswith(b"-ERR [AUTH]") and b"STLS" in reply, reply
        reply = c.cmd(f"PASS {PASSWORD}")
        assert reply.startswith(b"-ERR"), reply
        reply = c.cmd("AUTH PLAIN " + B64(plain(USER, PASSWORD)))
        assert reply.startswith(b"-ERR") and b"STLS" in reply, reply
        reply = c.cmd("AUTH LOGIN")
        assert reply.startswith(b"-ERR"), reply
        assert not logged_in(c)
        # SCRAM never shows the password: allowed without TLS.
        reply, _ = pop3_scram(c, USER, PASSWORD)
        assert reply.startswith(b"+OK"), reply
        c.ok("QUIT")
    assert f"rip={netns.client_addr}" in p.log()
    # After STLS everything is offered and works.
    c = netns.pop3(port)
    try:
        c.ok("STLS")
        c.starttls(tls13(p))
        caps = capa(c)
        assert "USER" in caps, caps
        assert set(sasl_capa(c)) == {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"}
        c.login(USER, PASSWORD)
        assert c.stat()[0] == 1
    finally:
        c.close()


def test_plaintext_auth_tls_smtp_from_a_remote_address(make_pillar, netns):
    p, port, smtp_port = remote_box(make_pillar, netns)
    c = netns.smtp(smtp_port)
    try:
        kw = c.keywords(c.ehlo())
        assert kw.get("AUTH") == ["SCRAM-SHA-256"], kw
        r = c.cmd("AUTH PLAIN " + B64(plain(USER, PASSWORD)))
        assert r.code == 538, r  # RFC 4954 §6: encryption required
        r = c.cmd("AUTH LOGIN")
        assert r.code == 538, r
        assert c.cmd("STARTTLS").code == 220
        c.starttls(tls13(p))
        kw = c.keywords(c.ehlo())
        assert set(kw["AUTH"]) == {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"}, kw
        r, _ = smtp_auth(c, "PLAIN", plain(USER, PASSWORD))
        assert r.code == 235, r
    finally:
        c.close()


@needs("curl")
def test_curl_from_a_remote_address_needs_stls(make_pillar, netns):
    p, port, _ = remote_box(make_pillar, netns)
    url = f"pop3://localhost:{port}/1"
    common = ["-sS", "--max-time", "30", "--resolve", f"localhost:{port}:{netns.host_addr}",
              "--user", f"{USER}:{PASSWORD}"]
    r = netns.run([tool("curl"), *common, "--ssl-reqd", "--cacert", str(p.cert), url],
                  capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 0, r.stderr
    assert b"Subject: test message 1" in r.stdout
    # Without TLS the server will not take the password in clear.
    r = netns.run([tool("curl"), *common, url], capture_output=True, stdin=subprocess.DEVNULL,
                  timeout=60)
    assert r.returncode != 0, r.stdout
    assert b"Subject" not in r.stdout


def test_plaintext_auth_always_from_a_remote_address(make_pillar, netns):
    p, port, _ = remote_box(make_pillar, netns, plaintext_auth="always")
    with netns.pop3(port) as c:
        assert "USER" in capa(c)
        assert set(sasl_capa(c)) == {"SCRAM-SHA-256", "PLAIN", "LOGIN"}
        c.login(USER, PASSWORD)
        assert c.stat()[0] == 1


def test_plaintext_auth_never(make_pillar, netns):
    """never: no USER/PASS, PLAIN or LOGIN anywhere, TLS or loopback;
    SCRAM still works."""
    p, port, _ = remote_box(make_pillar, netns, plaintext_auth="never")
    targets = [("remote, plain", lambda: netns.pop3(port)),
               ("loopback, plain", lambda: p.conn()),
               ("loopback, POP3S", lambda: p.pop3s(context=tls13(p)))]
    for i, (what, make) in enumerate(targets):
        # A mailbox each, so no session waits for another's lock.
        user = f"never{i}@{DOMAIN}"
        p.add_user(user, PASSWORD)
        with make() as c:
            caps = capa(c)
            assert "USER" not in caps, (what, caps)
            mechs = set(sasl_capa(c))
            assert not mechs & {"PLAIN", "LOGIN"}, (what, mechs)
            assert "SCRAM-SHA-256" in mechs, (what, mechs)
            assert c.cmd(f"USER {user}").startswith(b"-ERR [AUTH]"), what
            assert c.cmd("AUTH PLAIN " + B64(plain(user, PASSWORD))).startswith(b"-ERR"), what
            reply, _ = pop3_scram(c, user, PASSWORD)
            assert reply.startswith(b"+OK"), (what, reply)


# -- brute force ----------------------------------------------------------------------


def test_failure_delay_does_not_block_other_clients(make_pillar):
    """A's wrong password is answered only after auth_failure_delay; while A
    waits, B logs in, reads its mailbox and gets every reply first."""
    p = make_pillar(auth_failure_delay="1500ms")
    p.add_user(USER, PASSWORD)
    p.add_user(BOB, BOB_PASSWORD)
    p.deliver(BOB, simple_message(1))
    a = Conn(p.port, source="127.0.0.60")
    b = Conn(p.port, source="127.0.0.61")
    try:
        a.ok(f"USER {USER}")
        t0 = time.monotonic()
        a.send("PASS wrong\r\n")
        b.login(BOB, BOB_PASSWORD)
        assert b.stat()[0] == 1
        b.ok("RETR 1")
        b.multiline()
        assert not a.pending(), "A's failure was answered before B's whole session"
        assert a.line() == FAIL
        assert time.monotonic() - t0 >= 1.5 * 0.9
    finally:
        a.close()
        b.close()


def test_sasl_failure_is_delayed_too(make_pillar):
    p = make_pillar(auth_failure_delay="1500ms")
    p.add_user(USER, PASSWORD)
    p.add_user(BOB, BOB_PASSWORD)
    a = Conn(p.port, source="127.0.0.62")
    b = Conn(p.port, source="127.0.0.63")
    try:
        t0 = time.monotonic()
        a.send("AUTH PLAIN " + B64(plain(USER, "wrong")) + "\r\n")
        reply, _ = pop3_scram(b, BOB, BOB_PASSWORD)
        assert reply.startswith(b"+OK"), reply
        assert not a.pending(), "A's failure was answered before B's login"
        assert a.line() == FAIL
        assert time.monotonic() - t0 >= 1.5 * 0.9
    finally:
        a.close()
        b.close()


def timed_failure(p, source, user=USER):
    """One failed USER/PASS from source on a fresh connection; returns the
    time from PASS to the reply."""
    with Conn(p.port, source=source) as c:
        c.ok(f"USER {user}")
        t0 = time.monotonic()
        reply = c.cmd("PASS wrong")
        elapsed = time.monotonic() - t0
        assert reply == FAIL, reply
        return elapsed


def test_penalty_grows_per_address_and_is_forgotten_after_success(make_pillar):
    base = 0.2
    # The fifth failure waits 3.2 s: more than the harness's login_timeout.
    p = make_pillar(auth_failure_delay="200ms", login_timeout="20s")
    p.add_user(USER, PASSWORD)
    p.add_user(BOB, BOB_PASSWORD)
    bad = "127.0.0.70"
    delays = [timed_failure(p, bad) for _ in range(4)]
    # Doubling from the base: 0.2, 0.4, 0.8, 1.6 s. Each must clearly exceed
    # the one before (by at least half the expected step), whatever the
    # machine's speed.
    for n, d in enumerate(delays):
        assert d >= base * 2 ** n * 0.9, delays
    for n in range(1, 4):
        assert delays[n] - delays[n - 1] >= base * 2 ** (n - 1) * 0.5, delays

    # Another address is not penalised, and is not held up by the penalised
    # one: its failure comes back in about the base delay...
    other = timed_failure(p, "127.0.0.71")
    assert other < delays[2], (other, delays)

    # ...and its login completes while bad's fifth failure (3.2 s) waits.
    a = Conn(p.port, source=bad)
    b = Conn(p.port, source="127.0.0.72")
    try:
        a.ok(f"USER {USER}")
        a.send("PASS wrong\r\n")
        b.login(BOB, BOB_PASSWORD)
        assert not a.pending(), "the penalised failure was answered before B's login"
        assert a.line() == FAIL
    finally:
        a.close()
        b.close()

    # A success from the address forgets its failures.
    with Conn(p.port, source=bad) as c:
        c.login(USER, PASSWORD)
        c.ok("QUIT")
    after = timed_failure(p, bad, user=BOB)
    assert after < delays[2], (after, delays)


def test_penalty_counts_sasl_failures(make_pillar):
    p = make_pillar(auth_failure_delay="200ms")
    p.add_user(USER, PASSWORD)
    delays = []
    for i in range(3):
        with Conn(p.port, source="127.0.0.73") as c:
            t0 = time.monotonic()
            reply, _ = pop3_auth(c, "PLAIN", plain(USER, f"wrong{i}"))
            delays.append(time.monotonic() - t0)
            assert reply == FAIL, reply
    assert delays[1] - delays[0] >= 0.1 and delays[2] - delays[1] >= 0.2, delays


def test_three_failures_close_the_connection(make_pillar):
    """Whatever the mix of USER/PASS, AUTH PLAIN and SCRAM, the third failure
    ends the connection."""
    p = make_pillar(auth_failure_delay="50ms")
    p.add_user(USER, PASSWORD)
    c = Conn(p.port, source="127.0.0.80")
    try:
        c.ok(f"USER {USER}")
        assert c.cmd("PASS wrong") == FAIL
        reply, _ = pop3_auth(c, "PLAIN", plain(NOBODY, "x"))
        assert reply == FAIL, reply
        s = Scram(USER, "wrong")
        reply, _ = pop3_auth(c, "SCRAM-SHA-256", s.first(), [lambda ch: s.final(ch)])
        assert reply.startswith(FAIL), reply
        assert c.read_to_eof() == b""
    finally:
        c.close()
    assert "reason=auth-failures" in p.log()
    # The address can still log in on a new connection.
    with Conn(p.port, source="127.0.0.80") as c:
        c.login(USER, PASSWORD)


def test_malformed_sasl_counts_as_a_failure(make_pillar):
    p = make_pillar(auth_failure_delay="50ms")
    p.add_user(USER, PASSWORD)
    with Conn(p.port, source="127.0.0.81") as c:
        for _ in range(3):
            reply = c.cmd("AUTH PLAIN %%%")
            assert reply.startswith(b"-ERR"), reply
        assert c.read_to_eof() == b""


def test_max_connections_per_ip(make_pillar):
    p = make_pillar(max_connections_per_ip="3", pop3s=True)
    p.add_user(USER, PASSWORD)
    src = "127.0.0.90"
    held = [Conn(p.port, source=src), Conn(p.port, source=src), p.pop3s(source=src)]
    try:
        # The fourth from that address, on either port, is turned away.
        refused = Conn(p.port, source=src, greet=False)
        line = refused.read_to_eof()
        assert line.startswith(b"-ERR"), line
        refused.close()
        # Other addresses are not affected.
        with Conn(p.port, source="127.0.0.91") as c:
            c.login(USER, PASSWORD)
            c.ok("QUIT")
        assert "reason=max-connections-per-ip" in p.log()
        # When one closes, the address may connect again (the slot is given
        # back once the server has seen the close).
        held.pop(0).close()

        def try_connect():
            c = Conn(p.port, source=src, greet=False)
            first = c.line()
            if first.startswith(b"+OK"):
                return c
            c.close()
            return None

        c = wait_for(try_connect, 10, "a slot to be given back")
        held.append(c)
    finally:
        for c in held:
            c.close()


def test_no_enumeration(box):
    """Unknown user, wrong password (and a locked mailbox, when the command
    exists): the same reply, through USER/PASS, PLAIN, LOGIN and SCRAM."""
    p = box
    replies = {}
    seq = iter(range(100, 200))

    def fresh():
        return Conn(p.port, source=f"127.0.0.{next(seq)}")

    for who, user, password in (("unknown", NOBODY, "x"), ("wrong", USER, "wrong")):
        with fresh() as c:
            c.ok(f"USER {user}")
            replies[(who, "pass")] = c.cmd(f"PASS {password}")
        with fresh() as c:
            replies[(who, "plain")] = pop3_auth(c, "PLAIN", plain(user, password))[0]
        with fresh() as c:
            replies[(who, "login")] = pop3_auth(c, "LOGIN", None, [user.encode(), password.encode()])[0]
        with fresh() as c:
            s = Scram(user, password)
            replies[(who, "scram")] = pop3_auth(c, "SCRAM-SHA-256", s.first(),
                                                [lambda ch: s.final(ch)])[0]
    assert set(replies.values()) == {FAIL}, replies
    # fail2ban can match the failures.
    log = p.log()
    assert re.search(rf"auth failed user={re.escape(NOBODY)} rip=127\.0\.0\.\d+", log), log
    assert re.search(rf"auth failed user={re.escape(USER)} rip=127\.0\.0\.\d+", log), log


def test_locked_mailbox(box):
    p = box
    r = p.cli("user", "lock", USER, check=False)
    if r.returncode != 0 and re.search(r"unknown|usage", r.stderr_text, re.I):
        pytest.skip(f"`pillar user lock` does not exist yet: {r.stderr_text.strip()}")
    assert r.returncode == 0, r.stderr_text
    with Conn(p.port, source="127.0.0.110") as c:
        c.ok(f"USER {USER}")
        assert c.cmd("PASS wrong") == FAIL  # before the right password: no hint
    with Conn(p.port, source="127.0.0.111") as c:
        c.ok(f"USER {USER}")
        reply = c.cmd(f"PASS {PASSWORD}")
        assert reply == b"-ERR [AUTH] mailbox locked", reply
    with Conn(p.port, source="127.0.0.112") as c:
        reply, _ = pop3_scram(c, USER, PASSWORD)
        assert reply == b"-ERR [AUTH] mailbox locked", reply
    p.cli("user", "unlock", USER)
    with Conn(p.port, source="127.0.0.113") as c:
        c.login(USER, PASSWORD)
