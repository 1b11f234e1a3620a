"""swaks, a real SMTP client, against the SMTP and LMTP listeners: a plain
message, 8-bit bodies (UTF-8 and Latin-1 octets), an exact DATA file,
PIPELINING, several recipients, and LMTP over TCP and a unix socket. The
stored file is checked octet by octet."""

import re
import subprocess

import pytest

from harness import BOB, PASSWORD, USER, split_trace, tool

pytestmark = pytest.mark.skipif(not tool("swaks"), reason="swaks not installed (Debian package swaks)")

SENDER = "swaks-sender@example.org"


def swaks(*args, check=True):
    cmd = [tool("swaks").encode(), b"--from", SENDER.encode(), b"--helo", b"client.example.org",
           b"--timeout", b"30"]
    cmd += [a if isinstance(a, bytes) else str(a).encode() for a in args]
    r = subprocess.run(cmd, capture_output=True, timeout=90)
    if check:
        assert r.returncode == 0, (r.returncode, r.stdout.decode(errors="replace")[-3000:],
                                   r.stderr.decode(errors="replace")[-2000:])
    return r


def only(p, address):
    files = p.check_names(address)
    assert len(files) == 1, (address, sorted(files))
    return_path, received, rest = split_trace(next(iter(files.values())))
    assert return_path == f"<{SENDER}>".encode()
    return rest


def split_message(rest):
    head, sep, body = rest.partition(b"\n\n")
    assert sep, rest[:300]
    return head, body


def test_swaks_plain(mta):
    r = swaks("--to", USER, "--server", f"127.0.0.1:{mta.smtp_port}",
              "--header", "Subject: plain swaks", "--body", "Hello from swaks.")
    out = r.stdout.decode(errors="replace")
    assert re.search(r"<-  250[ -]", out), out
    rest = only(mta, USER)
    head, body = split_message(rest)
    assert b"\nSubject: plain swaks\n" in b"\n" + head + b"\n"
    assert re.search(rb"(?m)^Message-Id: <[^>]+>$", head), head
    assert body.rstrip(b"\n") == b"Hello from swaks."
    assert b"\r" not in rest


@pytest.mark.parametrize("pipeline", [False, True], ids=["lockstep", "pipelined"])
def test_swaks_8bit_body(mta, pipeline):
    body = ("UTF-8: Grüße € 日本語 — ça va?\n".encode()
            + b"Latin-1: caf\xe9 na\xefve \xa9 \xbd \xff\n"
            + b".a line with a leading dot\n..two dots\nlast line")
    args = ["--to", USER, "--server", f"127.0.0.1:{mta.smtp_port}",
            "--header", "Subject: 8-bit swaks", "--body", body]
    if pipeline:
        args.append("--pipeline")
    swaks(*args)
    _, stored_body = split_message(only(mta, USER))
    # swaks ends the body with a line end of its own (and may add blank lines).
    assert stored_body.startswith(body + b"\n"), stored_body[:400]
    assert stored_body[len(body):].strip(b"\n") == b""


def test_swaks_exact_data_file(mta, tmp_path):
    # --data: swaks sends the file as the whole DATA (line ends made CRLF,
    # dot-stuffed, then <CRLF>.<CRLF>); the stored message must be the file.
    data = (b"From: <swaks-sender@example.org>\nTo: <alice@example.test>\n"
            b"Subject: exact \xe2\x9c\x93\nX-Latin1: caf\xe9\n\n"
            b".\n..\n.dot\n\tindented\n" + b"x" * 990 + b"\n\xc3\xa9\xe9\xff\x80\nend")
    f = tmp_path / "data.eml"
    f.write_bytes(data)
    swaks("--to", USER, "--server", f"127.0.0.1:{mta.smtp_port}", "--data", b"@" + str(f).encode())
    assert only(mta, USER) == data + b"\n"


def test_swaks_several_recipients_one_unknown(mta):
    r = swaks("--to", f"{USER},nobody@example.test,{BOB}", "--server",
              f"127.0.0.1:{mta.smtp_port}", "--body", "to three", check=False)
    out = r.stdout.decode(errors="replace")
    assert re.search(r"<\*\* 550[ -]5\.1\.1", out), out
    # swaks goes on with the recipients that were accepted.
    assert split_message(only(mta, USER))[1].rstrip(b"\n") == b"to three"
    assert split_message(only(mta, BOB))[1].rstrip(b"\n") == b"to three"


def test_swaks_relay_denied(mta):
    r = swaks("--to", "someone@example.org", "--server", f"127.0.0.1:{mta.smtp_port}",
              check=False)
    assert r.returncode != 0
    out = r.stdout.decode(errors="replace")
    assert re.search(r"<\*\* 554[ -]5\.7\.1", out), out
    assert mta.stored(USER) == {} and mta.stored(BOB) == {}


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_swaks_lmtp(mta, transport):
    where = (["--server", f"127.0.0.1:{mta.lmtp_port}"] if transport == "tcp"
             else ["--socket", mta.lmtp_path])
    r = swaks("--to", f"{USER},{BOB}", *where, "--protocol", "LMTP",
              "--header", "Subject: over LMTP", "--body", "LMTP body \xe9".encode("latin-1"))
    out = r.stdout.decode(errors="replace")
    assert out.count("<-  250 ") >= 4, out  # MAIL, 2 RCPT, and one per recipient after DATA
    for a in (USER, BOB):
        assert split_message(only(mta, a))[1].rstrip(b"\n") == b"LMTP body \xe9"


def test_swaks_then_pop3(mta):
    swaks("--to", USER, "--server", f"127.0.0.1:{mta.smtp_port}", "--body", "fetch me")
    with mta.session(USER, PASSWORD) as c:
        assert c.stat()[0] == 1
        c.ok("RETR 1")
        lines = c.multiline()
        c.ok("QUIT")
    assert lines[0].startswith(b"Return-Path: <swaks-sender@example.org>")
    assert b"fetch me" in lines
