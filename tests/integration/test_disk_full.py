"""Disk full: the mail root is a small tmpfs that the test mounts (as root)
and fills. Delivery must then fail with a temporary error (SMTP 452 4.3.1
or, after the data, 451 4.3.0; LMTP the same per recipient; `pillar
deliver` exit 75), leave nothing partial in new/, tmp/ or the spool, and the
server must keep serving: POP3 logins work, and mail is taken again as soon
as there is room."""

import errno
import os
import pwd
import subprocess

import pytest

from harness import BOB, BOB_PASSWORD, PASSWORD, USER, is_root, lf, split_trace, wait_for

SENDER = "sender@example.org"
TEMP_AT_RCPT = {(452, "4.3.1")}
TEMP_AT_END = {(451, "4.3.0"), (452, "4.3.1")}


def message(n, size=200):
    body = b"".join(b"%06d " % i + b"f" * 72 + b"\r\n" for i in range(max(1, size // 80)))
    return (f"From: <{SENDER}>\r\nTo: <{USER}>\r\nSubject: disk {n}\r\n"
            f"Message-ID: <disk-{n}@example.org>\r\n\r\n").encode() + body


@pytest.fixture
def small_disk(make_pillar):
    """A running instance whose mail root is a 2 MB tmpfs; returns
    (pillar, Filler)."""
    if not is_root():
        pytest.skip("mounting a tmpfs needs root")
    p = make_pillar(smtp=True, lmtp=True, start=False, domain=False)
    mnt = p.base / "mailfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        owner = pwd.getpwnam(p.conf_value("run_as"))
        os.chown(mnt, owner.pw_uid, owner.pw_gid)
        os.chmod(mnt, 0o700)
        p.configure(mail_root=str(mnt))
        p.add_domain()
        p.add_user(USER, PASSWORD)
        p.add_user(BOB, BOB_PASSWORD)
        p.start()
        yield p, Filler(mnt)
    finally:
        if p.proc is not None and p.proc.poll() is None:
            p.stop()
        r = subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


class Filler:
    """Fills the file system with a file of the test's own (at the top of the
    mail root, where no mailbox is)."""

    def __init__(self, mnt):
        self.path = mnt / "filler"

    def fill(self, leave=0):
        """Write until the disk is full, then give back `leave` octets."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            # Big writes first, then smaller ones for what is left.
            for size in (65536, 4096, 512, 1):
                block = b"\0" * size
                while True:
                    try:
                        if os.write(fd, block) == 0:
                            break
                    except OSError as e:
                        assert e.errno == errno.ENOSPC, e
                        break
        finally:
            os.close(fd)
        if leave:
            size = os.path.getsize(self.path)
            os.truncate(self.path, max(0, size - leave))

    def free(self):
        os.unlink(self.path)


def no_leftovers(p, address=USER, before=0):
    assert len(p.stored(address)) == before, sorted(p.stored(address))
    wait_for(lambda: not p.partial_files(), 10, "partial files to be removed")


def smtp_attempt(p, msg, rcpts=(USER,)):
    """One transaction; returns ("rcpt", reply) if a recipient was refused,
    or ("end", reply) for the reply after the data."""
    with p.smtp() as c:
        c.ehlo()
        r = c.cmd(f"MAIL FROM:<{SENDER}>")
        if r.code != 250:
            return "mail", r
        for a in rcpts:
            r = c.cmd(f"RCPT TO:<{a}>")
            if r.code != 250:
                return "rcpt", r
        c.expect("DATA", 354)
        c.send(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        r = c.reply(timeout=30)
        c.expect("QUIT", 221)
        return "end", r


def assert_temporary(where, r):
    key = (r.code, r.enhanced)
    if where in ("mail", "rcpt"):
        assert key in TEMP_AT_RCPT, (where, r)
    else:
        assert key in TEMP_AT_END, (where, r)


def pop3_still_works(p, n):
    with p.wait_unlocked(USER, PASSWORD) as c:
        assert c.stat()[0] == n
        if n:
            c.ok("RETR 1")
            c.multiline()
        c.ok("QUIT")


def test_full_disk_smtp_is_a_temporary_failure(small_disk):
    p, disk = small_disk
    s = p.smtplib()
    assert s.sendmail(SENDER, [USER], message(0)) == {}
    s.quit()
    disk.fill()
    where, r = smtp_attempt(p, message(1, 50_000))
    assert_temporary(where, r)
    no_leftovers(p, before=1)
    # The server is still serving.
    pop3_still_works(p, 1)
    where, r = smtp_attempt(p, message(2, 200))
    assert_temporary(where, r)
    no_leftovers(p, before=1)
    # Room again: mail is taken, whole.
    disk.free()
    where, r = smtp_attempt(p, message(3, 5000))
    assert (where, r.code) == ("end", 250), r
    got = sorted(split_trace(d)[2] for d in p.stored_list(USER))
    assert got == sorted([lf(message(0)), lf(message(3, 5000))])
    assert not p.partial_files()
    pop3_still_works(p, 2)


def test_disk_fills_during_the_data(small_disk):
    # Some room, but less than the message: the write fails half way; the
    # half-written message must go, and with it the space it took, so that a
    # small message fits afterwards without anything else being freed.
    p, disk = small_disk
    disk.fill(leave=300_000)
    where, r = smtp_attempt(p, message(1, 1_000_000))
    assert_temporary(where, r)
    no_leftovers(p)
    where, r = smtp_attempt(p, message(2, 20_000))
    assert (where, r.code) == ("end", 250), r
    assert [split_trace(d)[2] for d in p.stored_list(USER)] == [lf(message(2, 20_000))]
    assert not p.partial_files()
    pop3_still_works(p, 1)


def test_disk_fills_with_several_recipients(small_disk):
    # A message for two mailboxes that does not fit: neither gets it.
    p, disk = small_disk
    disk.fill(leave=150_000)
    where, r = smtp_attempt(p, message(1, 400_000), rcpts=(USER, BOB))
    assert_temporary(where, r)
    no_leftovers(p, USER)
    no_leftovers(p, BOB)


def test_full_disk_bdat(small_disk):
    p, disk = small_disk
    disk.fill(leave=100_000)
    msg = message(1, 500_000)
    with p.smtp() as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        r = c.cmd(f"RCPT TO:<{USER}>")
        if r.code == 250:
            replies = []
            for i in range(0, len(msg), 65536):
                piece = msg[i : i + 65536]
                last = i + 65536 >= len(msg)
                c.send(b"BDAT %d%s\r\n" % (len(piece), b" LAST" if last else b"") + piece)
                replies.append(c.reply(timeout=30))
                if replies[-1].code != 250:
                    break
            bad = [x for x in replies if x.code != 250]
            assert bad, "the whole message was acknowledged on a full disk"
            assert bad[0].code in (451, 452) and bad[0].enhanced in ("4.3.0", "4.3.1"), bad[0]
        else:
            assert (r.code, r.enhanced) in TEMP_AT_RCPT, r
    no_leftovers(p)
    pop3_still_works(p, 0)


def test_full_disk_lmtp_per_recipient(small_disk):
    p, disk = small_disk
    disk.fill(leave=50_000)
    msg = message(1, 300_000)
    with p.lmtp() as c:
        c.ehlo(verb="LHLO")
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        accepted = 0
        for a in (USER, BOB):
            r = c.cmd(f"RCPT TO:<{a}>")
            if r.code == 250:
                accepted += 1
            else:
                assert (r.code, r.enhanced) in TEMP_AT_RCPT, r
        if accepted:
            c.expect("DATA", 354)
            c.send(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
            for r in c.replies(accepted, timeout=30):
                assert (r.code, r.enhanced) in TEMP_AT_END, r
            assert not c.pending(0.2), bytes(c.buf)
        c.expect("QUIT", 221)
    no_leftovers(p, USER)
    no_leftovers(p, BOB)


def test_full_disk_pillar_deliver_exits_75(small_disk):
    p, disk = small_disk
    disk.fill()
    r = p.cli("deliver", "-f", SENDER, USER, input=lf(message(1, 50_000)), check=False)
    assert r.returncode == 75, (r.returncode, r.stderr_text)
    assert r.stderr_text.strip()
    no_leftovers(p)
    disk.free()
    r = p.cli("deliver", "-f", SENDER, USER, input=lf(message(2, 5000)), check=False)
    assert r.returncode == 0, r.stderr_text
    assert [split_trace(d)[2] for d in p.stored_list(USER)] == [lf(message(2, 5000))]
    assert not p.partial_files()
