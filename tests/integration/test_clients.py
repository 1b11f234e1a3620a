"""Real mail clients against a real server: curl, fetchmail and mpop fetch
the mail; with leave-on-server and UIDL a second fetch gets nothing twice."""

import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from harness import PASSWORD, USER, message_lines, mpop, simple_message, tool, vsize


def message_ids(blobs):
    out = []
    for blob in blobs:
        m = re.search(rb"^Message-ID: (<[^>]+>)", blob, re.M | re.I)
        assert m, blob[:300]
        out.append(m.group(1).decode())
    return sorted(out)


def expected_ids(datas):
    return message_ids(datas)


# -- curl -------------------------------------------------------------------


def curl(p, path="", user=USER, password=PASSWORD, extra=()):
    return subprocess.run(
        [tool("curl") or "curl", "-sS", "--max-time", "30", "--user", f"{user}:{password}",
         *extra, f"pop3://127.0.0.1:{p.port}/{path}"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


@pytest.mark.skipif(not tool("curl"), reason="curl not installed")
def test_curl_list(mailbox):
    p, msgs = mailbox
    r = curl(p)
    assert r.returncode == 0, r.stderr
    want = b"".join(b"%d %d\r\n" % (i, vsize(d)) for i, (_, d) in enumerate(msgs, 1))
    assert r.stdout == want


@pytest.mark.skipif(not tool("curl"), reason="curl not installed")
def test_curl_retr(alice):
    data = (b"From: a@example.org\nSubject: curl\nMessage-ID: <curl@example.org>\n\n"
            b"line\n.dot line\n..two dots\n\xe9\xe8 8-bit\nend\n")
    alice.deliver(USER, simple_message(1))
    alice.deliver(USER, data)
    r = curl(alice, "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"".join(l + b"\r\n" for l in message_lines(data))
    # curl leaves the mail on the server.
    assert len(alice.files(USER)) == 2


@pytest.mark.skipif(not tool("curl"), reason="curl not installed")
def test_curl_wrong_password_is_login_denied(mailbox):
    p, msgs = mailbox
    r = curl(p, password="wrong")
    assert r.returncode == 67, (r.returncode, r.stderr)  # CURLE_LOGIN_DENIED
    assert curl(p).returncode == 0


@pytest.mark.skipif(not tool("curl"), reason="curl not installed")
def test_curl_retr_out_of_range_fails(mailbox):
    p, _ = mailbox
    r = curl(p, "9")
    assert r.returncode != 0
    assert r.stdout == b""


# -- fetchmail ----------------------------------------------------------------


STORE_SCRIPT = """\
import os, sys, tempfile
fd, _ = tempfile.mkstemp(dir=sys.argv[1], suffix=".eml")
os.write(fd, sys.stdin.buffer.read())
os.close(fd)
"""


def fetchmail(p, work: Path):
    rc = work / "fetchmailrc"
    out = work / "out"
    out.mkdir(exist_ok=True)
    script = work / "store.py"
    script.write_text(STORE_SCRIPT)
    rc.write_text(textwrap.dedent(f"""\
        set no syslog
        set no bouncemail
        poll 127.0.0.1 service {p.port} protocol pop3 uidl auth password
          user "{USER}" there with password "{PASSWORD}" is "root" here
          keep
          sslproto ''
          mda "/usr/bin/python3 {script} {out}"
        """))
    os.chmod(rc, 0o600)
    home = work / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, HOME=str(home), FETCHMAILHOME=str(home))
    r = subprocess.run(
        [tool("fetchmail"), "-f", str(rc), "-i", str(work / "fetchids"), "--pidfile",
         str(work / "fetchmail.pid"), "--keep", "--uidl", "--nosyslog", "-v"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env=env,
    )
    blobs = [f.read_bytes() for f in sorted(out.iterdir())]
    for f in out.iterdir():
        f.unlink()
    return r, blobs


@pytest.mark.skipif(not tool("fetchmail"), reason="fetchmail not installed")
def test_fetchmail_keep_uidl_fetches_nothing_twice(mailbox, tmp_path):
    p, msgs = mailbox
    r, blobs = fetchmail(p, tmp_path)
    log = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, log
    assert message_ids(blobs) == expected_ids([d for _, d in msgs]), log
    for blob, (_, data) in zip(sorted(blobs, key=lambda b: message_ids([b])),
                               sorted(msgs, key=lambda m: message_ids([m[1]]))):
        body = data.split(b"\n\n", 1)[1]
        assert body.replace(b"\n", b"") in blob.replace(b"\r", b"").replace(b"\n", b"")

    # Left on the server.
    assert p.uniques_on_disk(USER) == sorted(u for u, _ in msgs)

    # Second run: nothing new (fetchmail exits 1 for "no mail").
    r, blobs = fetchmail(p, tmp_path)
    log = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 1, log
    assert blobs == [], log

    # A new message: only it is fetched.
    new = simple_message(4)
    p.deliver(USER, new)
    r, blobs = fetchmail(p, tmp_path)
    log = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, log
    assert message_ids(blobs) == expected_ids([new]), log
    assert len(p.files(USER)) == 4


# -- mpop ---------------------------------------------------------------------


@pytest.mark.skipif(not tool("mpop"), reason="mpop not installed")
def test_mpop_keep_uidl_fetches_nothing_twice(mailbox, tmp_path):
    p, msgs = mailbox
    r = mpop(p, tmp_path)
    log, blobs = r.log, r.blobs
    assert r.returncode == 0, log
    assert message_ids(blobs) == expected_ids([d for _, d in msgs]), log
    # With received_header off, mpop stores the message as RETR sent it,
    # unstuffed, with its own line ends: compare the content line by line.
    by_id = {message_ids([d])[0]: d for _, d in msgs}
    for blob in blobs:
        data = by_id[message_ids([blob])[0]]
        assert blob.replace(b"\r\n", b"\n").splitlines() == data.splitlines()
    assert p.uniques_on_disk(USER) == sorted(u for u, _ in msgs)

    r = mpop(p, tmp_path)
    log, blobs = r.log, r.blobs
    assert r.returncode == 0, log
    assert blobs == [], log

    new = simple_message(4, body="a new one\n.with a dot line\n")
    p.deliver(USER, new)
    r = mpop(p, tmp_path)
    log, blobs = r.log, r.blobs
    assert r.returncode == 0, log
    assert message_ids(blobs) == expected_ids([new]), log
    assert len(p.files(USER)) == 4


@pytest.mark.skipif(not tool("mpop"), reason="mpop not installed")
def test_mpop_without_keep_deletes_what_it_fetched(mailbox, tmp_path):
    p, msgs = mailbox
    r = mpop(p, tmp_path, keep=False)
    log, blobs = r.log, r.blobs
    assert r.returncode == 0, log
    assert message_ids(blobs) == expected_ids([d for _, d in msgs]), log
    assert p.files(USER) == []
