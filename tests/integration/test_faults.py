"""Faults: failing system calls, killed processes, and the order of the
system calls that make a delivery durable.

Failures are injected without special hardware by an LD_PRELOAD library,
tests/faults/shim.c, which this module builds with the system C compiler.
It fails one chosen call (write, fsync, link, rename, unlink, or the open
that creates a file) with a chosen errno, or kills the process right before
or right after it — only for files under the instance's mail root, and only
once for the whole server (see the shim for the details).

After every fault: the client was told to try again (4xx) or lost its
connection, never told 250 for a message that is not stored; every message
that got 250 is in the mailbox exactly once and intact; nothing partial is
ever visible in new/; and the server goes on serving.

The system-call order test attaches strace(1) to a worker; the SIGKILL
trials kill workers at random under a continuous LMTP load from several
connections, then reconcile what the clients were told with the mailbox."""

import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from harness import (
    BOB,
    BOB_PASSWORD,
    PASSWORD,
    REPO,
    USER,
    Closed,
    Conn,
    SmtpConn,
    lf,
    split_trace,
    tool,
    vsize,
    wait_for,
)

SENDER = "sender@example.org"
SHIM_SRC = REPO / "tests" / "faults" / "shim.c"


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    cc = tool("cc") or tool("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the fault-injection shim")
    out = tmp_path_factory.mktemp("shim") / "shim.so"
    r = subprocess.run([cc, "-shared", "-fPIC", "-O1", "-Wall", "-o", str(out), str(SHIM_SRC),
                        "-ldl"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"building the shim failed:\n{r.stderr}"
    # The workers map it at exec, as root; nothing reads it after the drop.
    return out


def fault_env(p, shim, spec):
    """The environment that arms the shim for `pillar serve` or `pillar
    deliver` of instance p; returns the mark file the shim creates when it
    fires (in a directory the unprivileged workers can write)."""
    d = p.base / "fault"
    d.mkdir(exist_ok=True)
    os.chmod(d, 0o1777)
    mark = d / "fired"
    env = {
        "LD_PRELOAD": str(shim),
        "PILLAR_FAULT": spec,
        "PILLAR_FAULT_ROOT": os.path.realpath(p.mail_root),
        "PILLAR_FAULT_MARK": str(mark),
    }
    # A sanitizer build wants its runtime first among the preloaded
    # libraries; the shim in front of it is harmless (its calls go on to
    # the sanitizer's interceptors).
    asan = os.environ.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "verify_asan_link_order=0"
    return mark, env


def faulty(make_pillar, shim, spec, workers=1, **kw):
    """A started instance (SMTP and LMTP, alice and bob) whose server runs
    with the fault `spec`; returns (pillar, mark)."""
    p = make_pillar(start=False, smtp=True, lmtp=True, workers=workers, **kw)
    p.add_user(USER, PASSWORD)
    p.add_user(BOB, BOB_PASSWORD)
    mark, env = fault_env(p, shim, spec)
    p.env.update(env)
    p.start()
    return p, mark


def make_message(tag, n, size):
    """A message with its own Message-ID whose body is a checksum pattern
    of about `size` octets (CRLF line ends, as sent)."""
    mid = f"{tag}-{n}@example.org"
    line = hashlib.sha256(mid.encode()).hexdigest().encode()
    body = b"".join(b"%06d " % i + line + b"\r\n" for i in range(max(1, size // 72)))
    return mid, (f"From: <{SENDER}>\r\nTo: <{USER}>\r\nSubject: fault {n}\r\n"
                 f"Message-ID: <{mid}>\r\n\r\n").encode() + body


def message_id(stored: bytes) -> str:
    m = re.search(rb"^Message-ID: <([^>]+)>$", stored, re.M)
    assert m, f"stored message without Message-ID: {stored[:300]!r}"
    return m.group(1).decode()


def reconcile(p, sent, acked, address=USER):
    """Every file in new/ is named with correct sizes, is one of the sent
    messages, intact, and there only once; every acknowledged message is
    there. Returns {message id: file name}."""
    seen = {}
    for name, data in p.check_names(address).items():
        _, _, rest = split_trace(data)
        mid = message_id(rest)
        assert mid in sent, f"{name}: a message nobody sent ({mid})"
        assert rest == lf(sent[mid]), f"{name}: message {mid} is not intact"
        assert mid not in seen, f"{mid} stored twice: {seen[mid]} and {name}"
        seen[mid] = name
    lost = set(acked) - set(seen)
    assert not lost, f"{len(lost)} acknowledged message(s) lost: {sorted(lost)[:5]}"
    return seen


def smtp_transaction(c, msg, rcpts=(USER,), lmtp=False):
    """MAIL, RCPT..., DATA on an open session. Returns the list of final
    replies (one, or one per accepted recipient under LMTP), or a 4xx reply
    given before the data was sent, as a one-element list."""
    r = c.cmd(f"MAIL FROM:<{SENDER}>")
    if r.code != 250:
        return [r]
    accepted = 0
    for a in rcpts:
        r = c.cmd(f"RCPT TO:<{a}>")
        if r.code != 250:
            return [r]
        accepted += 1
    r = c.cmd("DATA")
    if r.code != 354:
        return [r]
    c.send(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
    return c.replies(accepted if lmtp else 1, timeout=30)


def assert_temporary(r):
    assert r.code in (421, 451, 452) and r.enhanced and r.enhanced.startswith("4."), r


def no_partial_files(p):
    wait_for(lambda: not p.partial_files(), 10, "no files left in the spool or tmp/")


def still_serving(p, sent, acked):
    """A new SMTP delivery is taken and POP3 shows exactly what is stored."""
    mid, msg = make_message("after", 0, 2000)
    with SmtpConn(p.smtp_port) as c:
        c.ehlo()
        r = smtp_transaction(c, msg)
        assert [x.code for x in r] == [250], r
        c.expect("QUIT", 221)
    sent[mid] = msg
    acked = set(acked) | {mid}
    seen = reconcile(p, sent, acked)
    files = p.stored(USER)
    with p.wait_unlocked(USER, PASSWORD) as c:
        assert c.stat() == (len(files), sum(vsize(d) for d in files.values()))
        c.ok("QUIT")
    return seen


# -- errors from system calls during SMTP delivery --------------------------------

# (fault, how many of the messages must fail): a failing call fails exactly
# the message it belongs to; EINTR and short writes are retried, and a
# refused hard link falls back to a copy, so nothing fails at all.
ERRNO_FAULTS = [
    ("create:EMFILE", 1),          # creating the spool file
    ("create:ENOSPC:after=3", 1),
    ("write:ENOSPC", 1),           # the first write of the first message
    ("write:EIO:after=4", 1),      # a write in the middle of the stream
    ("write:EDQUOT:after=7", 1),
    ("write:EINTR:times=3", 0),
    ("write:short:times=6", 0),
    ("fsync:EIO", 1),              # the spool file
    ("fsync:EIO:after=2", 1),      # new/ after the rename: the entry is taken back
    ("fsync:ENOSPC:after=5", 1),
    ("fsync:EDQUOT:after=3", 1),   # a later message's spool file (NFS reports quota here)
    ("link:ENOSPC", 1),            # spool -> tmp/
    ("link:EDQUOT:after=2", 1),
    ("link:EXDEV:times=100", 0),   # another file system: copied instead
    ("rename:EDQUOT", 1),          # tmp/ -> new/
    ("rename:ENOSPC:after=3", 1),
    ("rename:EIO:after=2", 1),
]


@pytest.mark.parametrize("spec,failures", ERRNO_FAULTS, ids=[f for f, _ in ERRNO_FAULTS])
def test_failing_call_during_smtp_delivery(make_pillar, shim, spec, failures):
    p, mark = faulty(make_pillar, shim, spec)
    sent, acked, refused = {}, set(), []
    with SmtpConn(p.smtp_port) as c:
        c.ehlo()
        for n in range(4):
            # Each message spans a few 64 KiB spool writes.
            mid, msg = make_message("errno", n, 150_000)
            sent[mid] = msg
            replies = smtp_transaction(c, msg)
            r = replies[0]
            if r.code == 250:
                acked.add(mid)
            else:
                assert_temporary(r)
                refused.append(mid)
        c.expect("QUIT", 221)
    assert mark.exists(), "the fault never fired: the test tested nothing"
    assert len(refused) == failures, (refused, p.log()[-2000:])
    seen = reconcile(p, sent, acked)
    assert not set(refused) & set(seen), "a message refused with 4xx was stored"
    no_partial_files(p)
    still_serving(p, sent, acked)
    assert p.proc.poll() is None


@pytest.mark.parametrize("spec", ["rename:EDQUOT:after=2", "link:ENOSPC:after=2",
                                  "fsync:EIO:after=3"])
def test_failing_call_fails_only_its_lmtp_recipient(make_pillar, shim, spec):
    # The second recipient's commit fails: alice gets the message and her
    # 250, bob a 4xx of his own (RFC 2033 §4.2), and bob's mailbox is empty.
    p, mark = faulty(make_pillar, shim, spec)
    mid, msg = make_message("lmtp", 1, 100_000)
    with p.lmtp() as c:
        c.ehlo(verb="LHLO")
        replies = smtp_transaction(c, msg, rcpts=(USER, BOB), lmtp=True)
        c.expect("QUIT", 221)
    assert mark.exists(), "the fault never fired"
    assert replies[0].code == 250, replies
    assert_temporary(replies[1])
    reconcile(p, {mid: msg}, {mid})
    assert p.stored(BOB) == {}
    no_partial_files(p)
    still_serving(p, {mid: msg}, {mid})


def deliver_with_fault(make_pillar, shim, spec, tag):
    """`pillar deliver` of a new message to alice with the fault armed;
    returns (pillar, message id, message, the command's result)."""
    p = make_pillar(start=False)
    p.add_user(USER, PASSWORD)
    p.ensure_maildir(USER)
    mark, env = fault_env(p, shim, spec)
    mid, msg = make_message(tag, 1, 150_000)
    r = p.cli("deliver", "-f", SENDER, USER, input=lf(msg), check=False,
              env={**os.environ, **env})
    assert mark.exists(), f"the fault never fired: {r.stderr_text}"
    return p, mid, msg, r


@pytest.mark.parametrize("spec", ["write:ENOSPC", "fsync:EIO", "rename:EDQUOT",
                                  "link:EIO", "fsync:EIO:after=2"])
def test_failing_call_in_pillar_deliver_exits_75(make_pillar, shim, spec):
    # sysexits.h EX_TEMPFAIL: the MTA that called us keeps the message.
    p, mid, msg, r = deliver_with_fault(make_pillar, shim, spec, "deliver")
    assert r.returncode == 75, (r.returncode, r.stderr_text)
    assert r.stderr_text.strip()
    assert p.stored(USER) == {}
    no_partial_files(p)
    r = p.cli("deliver", "-f", SENDER, USER, input=lf(msg), check=False)
    assert r.returncode == 0, r.stderr_text
    reconcile(p, {mid: msg}, {mid})


# -- SIGKILL at each system-call boundary of the delivery path --------------------

# (fault, whether the message is in new/ afterwards). Before the rename into
# new/ has happened the message must not be there; after it, it may be (it
# was never acknowledged, so the sender retries: a duplicate is the lesser
# harm), and if it is, it is whole.
KILL_POINTS = [
    ("create:kill", False),
    ("create:kill-after", False),
    ("write:kill", False),
    ("write:kill-after:after=2", False),
    ("fsync:kill", False),
    ("fsync:kill-after", False),
    ("link:kill", False),
    ("link:kill-after", False),
    ("rename:kill", False),
    ("rename:kill-after", True),
    ("fsync:kill:after=2", True),       # new/ renamed into, not yet synced
    ("fsync:kill-after:after=2", True),  # durable; the 250 was never sent
]


@pytest.mark.parametrize("spec,stored", KILL_POINTS, ids=[k for k, _ in KILL_POINTS])
def test_sigkill_at_each_step_of_a_delivery(make_pillar, shim, spec, stored):
    # Two workers: the one that takes the connection dies, the other serves
    # the next client while the master replaces it.
    p, mark = faulty(make_pillar, shim, spec, workers=2)
    workers = p.workers()
    mid, msg = make_message("kill", 1, 150_000)
    c = SmtpConn(p.smtp_port)
    try:
        c.ehlo()
        try:
            replies = smtp_transaction(c, msg)
        except (Closed, OSError):
            replies = None
        assert replies is None, f"a reply from a killed worker: {replies}"
    finally:
        c.close()
    assert mark.exists(), "the fault never fired"
    # The connection closed when the worker died; the process may take a
    # moment more to be gone. Exactly one of the two dies.
    wait_for(lambda: len(set(workers) - set(p.workers())) == 1, 10,
             f"exactly one of the workers {workers} to be gone")
    seen = reconcile(p, {mid: msg}, set())
    assert bool(seen) == stored, f"{spec}: message in new/ is {bool(seen)}, want {stored}"
    still_serving(p, {mid: msg}, set(seen))


# Under LMTP with two recipients, the second recipient's own steps too:
# each recipient gets a link into its tmp/, a rename into its new/ and an
# fsync of that new/; the spool file is removed at the end.
LMTP_KILL_POINTS = ["write:kill", "fsync:kill", "link:kill", "rename:kill-after",
                    "link:kill:after=2", "link:kill-after:after=2", "rename:kill:after=2",
                    "rename:kill-after:after=2", "fsync:kill:after=3",
                    "fsync:kill-after:after=3", "unlink:kill", "unlink:kill-after"]


@pytest.mark.parametrize("spec", LMTP_KILL_POINTS)
def test_sigkill_at_each_step_of_an_lmtp_delivery_to_two_recipients(make_pillar, shim, spec):
    # A recipient whose 250 arrived before the worker died has the
    # message; any other may have it (a duplicate after the retry is the
    # lesser harm), whole, or not at all.
    p, mark = faulty(make_pillar, shim, spec, workers=2)
    workers = p.workers()
    mid, msg = make_message("lkill", 1, 150_000)
    replies = []
    c = p.lmtp()
    try:
        c.ehlo(verb="LHLO")
        c.expect(f"MAIL FROM:<{SENDER}>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.expect(f"RCPT TO:<{BOB}>", 250)
        c.expect("DATA", 354)
        c.send(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        try:
            for _ in range(3):  # a third reply would be a bug
                replies.append(c.reply(timeout=30))
        except (Closed, OSError):
            pass
    finally:
        c.close()
    assert mark.exists(), "the fault never fired"
    assert len(replies) <= 2 and all(r.code == 250 for r in replies), replies
    wait_for(lambda: len(set(workers) - set(p.workers())) == 1, 10,
             f"exactly one of the workers {workers} to be gone")
    acked = [a for a, r in zip((USER, BOB), replies) if r.code == 250]
    for address in (USER, BOB):
        reconcile(p, {mid: msg}, {mid} if address in acked else set(), address)
    still_serving(p, {mid: msg}, set(reconcile(p, {mid: msg}, set())))


DELIVER_KILL_POINTS = KILL_POINTS + [("unlink:kill", True), ("unlink:kill-after", True)]


@pytest.mark.parametrize("spec,stored", DELIVER_KILL_POINTS,
                         ids=[k for k, _ in DELIVER_KILL_POINTS])
def test_sigkill_at_each_step_of_pillar_deliver(make_pillar, shim, spec, stored):
    # An MTA that ran `pillar deliver` sees it killed (no exit status 0)
    # and tries again later.
    p, mid, msg, r = deliver_with_fault(make_pillar, shim, spec, "dkill")
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr_text)
    seen = reconcile(p, {mid: msg}, set())
    assert bool(seen) == stored, f"{spec}: message in new/ is {bool(seen)}, want {stored}"
    if not seen:  # the MTA's retry
        r = p.cli("deliver", "-f", SENDER, USER, input=lf(msg), check=False)
        assert r.returncode == 0, r.stderr_text
        reconcile(p, {mid: msg}, {mid})


# -- POP3 UPDATE --------------------------------------------------------------------

UPDATE_MESSAGES = 12
DELETED = [2, 3, 5, 8, 9, 12]  # message numbers the session DELEs


@pytest.mark.parametrize("spec", ["unlink:kill", "unlink:kill-after", "unlink:kill:after=3",
                                  "unlink:kill-after:after=3", "unlink:kill:after=6",
                                  "unlink:kill-after:after=6", "fsync:kill", "fsync:kill-after",
                                  "fsync:kill:after=2", "fsync:kill-after:after=2",
                                  "unlink:EIO:after=4", "fsync:EIO", "fsync:EIO:after=2",
                                  "fsync:EDQUOT:after=2"])
def test_fault_during_pop3_update(make_pillar, shim, spec):
    # Only DELE'd messages may be missing afterwards, whatever happens at
    # which unlink or at which of the two directory fsyncs (new/ first, then
    # cur/: half the messages are in each); a failed unlink or fsync is
    # reported as -ERR [SYS/TEMP].
    p, mark = faulty(make_pillar, shim, spec, workers=2)
    by_uid, sub = {}, {}
    for i in range(1, UPDATE_MESSAGES + 1):
        data = f"Subject: update {i}\n\nbody {i}\n".encode()
        where = "cur" if i % 2 == 0 else "new"
        u = p.deliver(USER, data, subdir=where)
        by_uid[u], sub[u] = data, where
    with p.session(USER, PASSWORD) as c:
        numbers = dict(c.uidls())
        for n in DELETED:
            c.ok(f"DELE {n}")
        try:
            reply = c.cmd("QUIT")
        except (Closed, OSError):
            reply = None
    assert mark.exists(), "the fault never fired"
    if "kill" in spec:
        assert reply is None, f"QUIT answered by a killed worker: {reply}"
    else:
        assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
        if spec.startswith("fsync:"):  # not "0 of 6 could not be removed"
            assert b"6 deleted messages were removed, but" in reply, reply
    deleted = {numbers[n] for n in DELETED}
    assert {sub[u] for u in deleted} == {"new", "cur"}, "both directories fsynced"
    kept = set(by_uid) - deleted
    on_disk = set(p.uniques_on_disk(USER))
    assert kept <= on_disk, f"not DELE'd but gone: {sorted(kept - on_disk)}"
    assert on_disk <= kept | deleted
    if spec.startswith("fsync:"):
        # The fsyncs come after every unlink.
        assert on_disk == kept
    # The mailbox is free again (the lock died with the worker) and every
    # remaining message is intact.
    with p.wait_unlocked(USER, PASSWORD) as c:
        uidls = c.uidls()
        assert sorted(u for _, u in uidls) == sorted(on_disk)
        for n, u in uidls:
            c.ok(f"RETR {n}")
            assert c.multiline() == by_uid[u].split(b"\n")[:-1]
        c.ok("QUIT")


def test_slow_disk_at_quit_does_not_hold_up_other_sessions(make_pillar, shim):
    # One worker, so both sessions share one event loop. The first fsync
    # under the mail root (new/, after QUIT's unlinks) takes 2 s: the other
    # session must be served meanwhile, and the QUIT still answered +OK only
    # once the removal is on disk.
    p, mark = faulty(make_pillar, shim, "fsync:stall", workers=1)
    gone = p.deliver(USER, b"Subject: one\n\nbody one\n")
    kept = p.deliver(USER, b"Subject: two\n\nbody two\n")
    p.deliver(BOB, b"Subject: bob\n\nbody bob\n")
    with p.session(USER, PASSWORD) as a, p.session(BOB, BOB_PASSWORD) as b:
        a.ok("DELE 1")
        a.send("QUIT\r\n")
        wait_for(mark.exists, 10, "the stalled fsync")
        started = time.monotonic()
        assert b.stat()[0] == 1
        b.ok("RETR 1")
        assert b.multiline() == [b"Subject: bob", b"", b"body bob"]
        took = time.monotonic() - started
        assert took < 1.0, f"a session waited {took:.2f} s behind another's QUIT"
        assert not a.pending(0), "QUIT answered before its fsync"
        assert a.line(timeout=10).startswith(b"+OK"), "QUIT not answered +OK"
        assert p.uniques_on_disk(USER) == [kept]
        assert gone not in p.uniques_on_disk(USER)
        b.ok("QUIT")


# -- reading and measuring the mailbox ------------------------------------------------


def read_until_dropped(p, c, got):
    """The rest of a RETR reply the server broke off: read to the end of the
    connection and check that the reply was not terminated as complete and
    that the server logged why. Returns all the octets."""
    c.sock.settimeout(15)
    while chunk := c.sock.recv(65536):
        got += chunk
    assert not got.endswith(b"\r\n.\r\n"), "a cut message was terminated as complete"
    wait_for(lambda: "event=read-error" in p.log(), 10, "the read error to be logged")
    return got


def test_retr_reads_what_it_cannot_map(make_pillar, shim):
    # A message file that cannot be mapped (no address space left, say) is
    # read instead, and arrives whole, dot-stuffed and terminated.
    p, mark = faulty(make_pillar, shim, "read:ENOMEM")
    data = b"Subject: read, not mapped\n\n" + b".dot line\n0123456789abcdef\n" * 20000
    p.deliver(USER, data)
    with p.session(USER, PASSWORD) as c:
        c.ok("RETR 1")
        assert c.multiline() == data.split(b"\n")[:-1]
        c.ok("QUIT")
    assert mark.exists(), "the fault never fired"


def test_message_shortened_during_retr_drops_only_that_connection(make_pillar):
    # Another program cuts a message file while it is being sent: the pages
    # past the new end are gone from the mapping. The connection is dropped
    # without a terminator, like any read error, and the worker goes on
    # serving its other sessions.
    p = make_pillar(workers=1)
    p.add_user(USER, PASSWORD)
    p.add_user(BOB, BOB_PASSWORD)
    data = b"Subject: cut short\n\n" + b"0123456789abcdef0123456789abcdef\n" * 600_000  # 20 MB
    p.deliver(USER, data)
    p.deliver(BOB, b"Subject: bob\n\nbody bob\n")
    mail_workers = p.workers("mail")
    [path] = [p.maildir(USER) / f for f in p.files(USER)]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # the server gets ahead little
    sock.connect(("127.0.0.1", p.port))
    with Conn(p.port, sock=sock) as c, p.session(BOB, BOB_PASSWORD) as b:
        c.login(USER, PASSWORD)
        c.send(b"RETR 1\r\n")
        got = bytearray(c.buf)
        while len(got) < 100_000:
            got += c.sock.recv(65536)
        os.truncate(path, 1000)
        got = read_until_dropped(p, c, got)
        assert got.startswith(b"+OK "), got[:100]
        assert len(got) < len(data), "the whole message came from a file cut to 1000 octets"
        # The same worker, still serving the other session.
        assert p.workers("mail") == mail_workers
        assert b.stat()[0] == 1
        b.ok("RETR 1")
        assert b.multiline() == [b"Subject: bob", b"", b"body bob"]
        b.ok("QUIT")


def test_read_error_in_retr_drops_the_connection_without_a_terminator(make_pillar, shim):
    # EIO on a read of the message file once RETR has begun: the only
    # honest ending is to drop the connection (with whatever of the reply
    # was queued), so the client never takes a truncated message for a
    # whole one. Nothing is lost. (A message this small is read, not
    # mapped.)
    p, mark = faulty(make_pillar, shim, "read:EIO")
    data = b"Subject: unreadable for a moment\n\n" + b"0123456789abcdef\n" * 8000
    p.deliver(USER, data)
    with p.session(USER, PASSWORD) as c:
        c.send(b"RETR 1\r\n")
        got = read_until_dropped(p, c, bytearray(c.buf))
    assert mark.exists(), "the fault never fired"
    assert got == b"" or got.startswith(b"+OK "), got[:100]
    with p.wait_unlocked(USER, PASSWORD) as c:
        assert c.stat()[0] == 1
        c.ok("RETR 1")
        assert c.multiline() == data.split(b"\n")[:-1]
        c.ok("QUIT")


def test_read_error_while_measuring_refuses_the_login_for_now(make_pillar, shim):
    # A message delivered without S=/W= is measured at login. EIO while
    # reading it: the login gets [SYS/TEMP] and the mailbox is unchanged;
    # the next login measures it and serves it.
    p, mark = faulty(make_pillar, shim, "read:EIO")
    data = b"Subject: no sizes in the name\n\nbody\n"
    uid = p.deliver(USER, data, sizes=False)
    with Conn(p.port) as c:
        c.ok(f"USER {USER}")
        reply = c.cmd(f"PASS {PASSWORD}")
        assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
        with pytest.raises(Closed):
            c.line()
    assert mark.exists(), "the fault never fired"
    assert p.files(USER) == [f"new/{uid}"]
    with p.wait_unlocked(USER, PASSWORD) as c:
        assert c.stat() == (1, vsize(data))
        c.ok("RETR 1")
        assert c.multiline() == data.split(b"\n")[:-1]
        c.ok("QUIT")
    # Measured now, and named with its sizes.
    assert len(p.check_names(USER)) == 1


def test_measured_names_without_rename_noreplace(make_pillar, shim):
    # Where renameat2(RENAME_NOREPLACE) is not supported (EINVAL), the scan
    # gives measured messages their S=/W= names with link and unlink
    # instead: one name per message, never two, contents intact.
    p, mark = faulty(make_pillar, shim, "rename:EINVAL:times=100")
    msgs = {}
    for i in range(3):
        data = f"Subject: {i}\n\n".encode() + b"line\n" * (i + 1)
        msgs[p.deliver(USER, data, sizes=False)] = data
    with p.session(USER, PASSWORD) as c:
        assert c.stat() == (3, sum(vsize(d) for d in msgs.values()))
        c.ok("QUIT")
    assert mark.exists(), "the fault never fired"
    names = p.files(USER)
    assert len(names) == 3, names
    for uid, data in msgs.items():
        mine = [n for n in names if n.split("/", 1)[1].startswith(uid + ",")]
        assert mine == [f"new/{uid},S={len(data)},W={vsize(data)}"], (uid, names)
    assert {d for d in p.stored(USER).values()} == set(msgs.values())


UPDATE_DELAY_S = 1.5


def test_pop3_update_holds_up_no_other_session(make_pillar):
    # Each unlink of a QUIT's deletions is made to take 1.5 s (strace's
    # delay injection on the only mail worker). Meanwhile another mailbox's
    # session connects, logs in and is answered: UPDATE runs on the thread
    # pool, not on the loop that serves everyone. The QUIT's +OK still
    # comes only after every deletion is done.
    strace = tool("strace")
    if strace is None:
        pytest.skip("strace is not installed (Debian package strace)")
    p = make_pillar(workers=1)
    p.add_user(USER, PASSWORD)
    p.add_user(BOB, BOB_PASSWORD)
    for i in range(3):
        p.deliver(USER, f"Subject: {i}\n\nbody {i}\n".encode())
    p.deliver(BOB, b"Subject: for bob\n\nhello\n")
    worker = p.workers("mail")[0]
    err = p.base / "strace.err"
    delay_us = int(UPDATE_DELAY_S * 1_000_000)
    with open(err, "wb") as errf:
        st = subprocess.Popen([strace, "-f", "-qq", "-e", "trace=unlink,unlinkat",
                               "-e", f"inject=unlink,unlinkat:delay_enter={delay_us}",
                               "-o", "/dev/null", "-p", str(worker)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)
    try:
        time.sleep(0.5)  # strace -qq prints nothing on attaching
        assert st.poll() is None, err.read_text()
        with p.session(USER, PASSWORD) as a:
            uidls = dict(a.uidls())
            a.ok("DELE 1")
            a.ok("DELE 2")
            a.send(b"QUIT\r\n")
            quit_sent = time.monotonic()
            with p.session(BOB, BOB_PASSWORD) as b:
                assert b.stat()[0] == 1
                b.ok("QUIT")
            bob_done = time.monotonic() - quit_sent
            # Served while the deletions still run: the QUIT's reply has
            # not come yet.
            assert not a.pending(0), \
                f"the other session was served only after the UPDATE ({bob_done:.2f}s)"
            reply = a.line(timeout=30)
            quit_took = time.monotonic() - quit_sent
    finally:
        st.send_signal(signal.SIGINT)  # detach; the worker goes on
        try:
            st.wait(20)
        except subprocess.TimeoutExpired:
            st.kill()
            st.wait(5)
    assert reply.startswith(b"+OK") and b"(2 messages deleted)" in reply, reply
    assert quit_took >= 2 * UPDATE_DELAY_S - 0.2, f"+OK after {quit_took:.2f}s"
    assert p.uniques_on_disk(USER) == [uidls[3]], (uidls, p.uniques_on_disk(USER))


@pytest.mark.parametrize("how", ["client-hangs-up", "server-stops"])
def test_pop3_update_finishes_whatever_happens_meanwhile(make_pillar, how):
    # Slow unlinks again. The client sends QUIT and hangs up at once, or
    # the server is told to stop while the deletions run: either way every
    # DELE'd message is removed, no other, and the log says so; on a stop
    # the client still gets its +OK before the worker exits.
    strace = tool("strace")
    if strace is None:
        pytest.skip("strace is not installed (Debian package strace)")
    p = make_pillar(workers=1, start=False)
    # The worker may exit while strace is attached, and a sanitizer build's
    # leak check cannot run under ptrace (it then reports a fatal error of
    # its own): no leak check in this test's server.
    p.env["LSAN_OPTIONS"] = "detect_leaks=0"
    p.start()
    p.add_user(USER, PASSWORD)
    for i in range(3):
        p.deliver(USER, f"Subject: {i}\n\nbody {i}\n".encode())
    worker = p.workers("mail")[0]
    err = p.base / "strace.err"
    delay_us = int(UPDATE_DELAY_S * 1_000_000)
    with open(err, "wb") as errf:
        st = subprocess.Popen([strace, "-f", "-qq", "-e", "trace=unlink,unlinkat",
                               "-e", f"inject=unlink,unlinkat:delay_enter={delay_us}",
                               "-o", "/dev/null", "-p", str(worker)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)
    try:
        time.sleep(0.5)  # strace -qq prints nothing on attaching
        assert st.poll() is None, err.read_text()
        c = p.session(USER, PASSWORD)
        uidls = dict(c.uidls())
        c.ok("DELE 1")
        c.ok("DELE 3")
        c.send(b"QUIT\r\n")
        if how == "client-hangs-up":
            c.close()
            wait_for(lambda: f"reason=quit user={USER}" in p.log(), 20, "the UPDATE to end")
        else:
            time.sleep(0.3)  # the first unlink is under way
            assert p.stop() == 0
            reply = c.line(timeout=5)
            c.close()
            assert reply.startswith(b"+OK") and b"(2 messages deleted)" in reply, reply
    finally:
        st.send_signal(signal.SIGINT)
        try:
            st.wait(20)
        except subprocess.TimeoutExpired:
            st.kill()
            st.wait(5)
    assert re.search(rf"event=disconnect reason=quit user={re.escape(USER)} .*deleted=2", p.log())
    assert p.uniques_on_disk(USER) == [uidls[2]], (uidls, p.uniques_on_disk(USER))
    if how == "client-hangs-up":
        with p.wait_unlocked(USER, PASSWORD) as c:
            assert c.stat()[0] == 1
            c.ok("QUIT")


# -- the order of the system calls of one delivery --------------------------------


class Trace:
    """strace -f -yy output, one event per system call: its name, the text of
    its arguments, and the line numbers where it started and ended (they
    differ when another thread's call came in between)."""

    LINE = re.compile(r"^(\d+) +(.*)$")
    RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
    CALL = re.compile(r"^(\w+)\((.*)$")

    def __init__(self, text):
        self.events = []
        pending = {}
        for i, raw in enumerate(text.splitlines()):
            m = self.LINE.match(raw)
            if not m:
                continue
            pid, rest = m.group(1), m.group(2)
            r = self.RESUMED.match(rest)
            if r:
                ev = pending.pop(pid, None)
                if ev is not None and ev["name"] == r.group(1):
                    ev["end"] = i
                    ev["args"] += r.group(2)
                continue
            c = self.CALL.match(rest)
            if not c:
                continue  # signals, exits
            ev = {"name": c.group(1), "args": c.group(2), "start": i, "end": i, "pid": pid}
            if rest.endswith("<unfinished ...>"):
                pending[pid] = ev
            self.events.append(ev)

    def find(self, names, pattern):
        rx = re.compile(pattern)
        return [e for e in self.events if e["name"] in names and rx.search(e["args"])]


def test_delivery_system_call_order(make_pillar):
    # The promise of DESIGN §4: 250 after DATA only once the message is on
    # disk and fsync'ed. strace shows it: write the spool file, fsync it,
    # link it into tmp/, rename into new/, fsync new/, and only then write
    # the 250 to the client's socket.
    strace = tool("strace")
    if strace is None:
        pytest.skip("strace is not installed (Debian package strace)")
    p = make_pillar(smtp=True, workers=1)
    p.add_user(USER, PASSWORD)
    worker = p.workers("mail")[0]
    out, err = p.base / "strace.out", p.base / "strace.err"
    calls = ("openat,write,writev,sendto,sendmsg,fsync,fdatasync,link,linkat,rename,renameat,"
             "renameat2,unlink,unlinkat")
    with open(err, "wb") as errf:
        st = subprocess.Popen([strace, "-f", "-yy", "-s", "80", "-e", f"trace={calls}",
                               "-o", str(out), "-p", str(worker)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)
    try:
        wait_for(lambda: b"attached" in err.read_bytes() or st.poll() is not None, 20,
                 "strace to attach to the worker")
        assert st.poll() is None, err.read_text()
        mid, msg = make_message("order", 1, 100_000)
        with SmtpConn(p.smtp_port, timeout=30) as c:
            c.ehlo()
            replies = smtp_transaction(c, msg)
            assert [r.code for r in replies] == [250], replies
            c.expect("QUIT", 221)
    finally:
        st.send_signal(signal.SIGINT)  # detach; the worker goes on
        try:
            st.wait(20)
        except subprocess.TimeoutExpired:
            st.kill()
            st.wait(5)
    reconcile(p, {mid: msg}, {mid})
    t = Trace(out.read_text(errors="replace"))
    spool = r"/\.spool/[^>]+>"
    writes = t.find(("write", "writev"), r"^\d+<[^>]*" + spool)
    syncs = t.find(("fsync", "fdatasync"), r"^\d+<[^>]*" + spool)
    links = t.find(("link", "linkat"), r'"tmp/')
    renames = t.find(("rename", "renameat", "renameat2"), r'"tmp/[^"]+", .*"new/')
    new_syncs = t.find(("fsync", "fdatasync"), r"^\d+<[^>]*/new>")
    text = replies[0].lines[0].decode()
    replies_out = t.find(("write", "writev", "sendto", "sendmsg"),
                         r"<TCP[^>]*>.*" + re.escape('"250 ' + text[:20]))
    for what, evs in (("spool writes", writes), ("spool fsync", syncs), ("link into tmp/", links),
                      ("rename into new/", renames), ("fsync of new/", new_syncs),
                      ("the 250 reply", replies_out)):
        assert evs, f"no {what} in the trace:\n" + out.read_text(errors="replace")[-4000:]
    assert len(syncs) == len(links) == len(renames) == len(new_syncs) == len(replies_out) == 1
    steps = [("last write of the spool file", max(writes, key=lambda e: e["end"])),
             ("fsync of the spool file", syncs[0]), ("link into tmp/", links[0]),
             ("rename into new/", renames[0]), ("fsync of new/", new_syncs[0]),
             ("250 on the socket", replies_out[0])]
    for (a, ea), (b, eb) in zip(steps, steps[1:]):
        assert ea["end"] < eb["start"], f"{b} began before {a} had returned"
    # The rename moves the very name the link made, and it is the stored file.
    tmp_name = re.search(r'"tmp/([^"]+)"', links[0]["args"]).group(1)
    assert f'"tmp/{tmp_name}"' in renames[0]["args"]
    assert any(n.startswith(tmp_name + ",") for n in p.stored(USER)), sorted(p.stored(USER))


# -- SIGKILL under load ---------------------------------------------------------------

KILLS = 200
KILL_WORKERS = 16  # each killed when it is a second old: no restart backoff
LOAD_CLIENTS = 8


class LmtpLoad:
    """LOAD_CLIENTS threads delivering to alice over LMTP without pause,
    each reconnecting when its connection breaks. Records every message
    sent and every one acknowledged with 250."""

    def __init__(self, p):
        self.p = p
        self.lock = threading.Lock()
        self.sent = {}
        self.acked = set()
        self.broken = 0
        self.other = []
        self.stop = threading.Event()

    def run(self, k):
        rng = random.Random(k)
        seq = 0
        while not self.stop.is_set():
            try:
                c = SmtpConn(self.p.lmtp_port, timeout=30)
            except (OSError, Closed, TimeoutError, AssertionError):
                self.stop.wait(0.01)  # only while no worker is accepting
                continue
            try:
                c.ehlo(verb="LHLO")
                while not self.stop.is_set():
                    mid, msg = make_message(f"load{k}", seq, rng.choice((300, 2000, 8000,
                                                                          40_000)))
                    seq += 1
                    with self.lock:
                        self.sent[mid] = msg
                    c.send(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                           % (SENDER.encode(), USER.encode()))
                    codes = [r.code for r in c.replies(3)]
                    if codes != [250, 250, 354]:
                        with self.lock:
                            self.other.append((mid, codes))
                        break
                    c.send(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
                    r = c.reply(timeout=30)
                    with self.lock:
                        if r.code == 250:
                            self.acked.add(mid)
                        else:
                            self.other.append((mid, r))
                            break
            except (Closed, OSError, TimeoutError):
                with self.lock:
                    self.broken += 1
            except AssertionError as e:
                with self.lock:
                    self.other.append(("malformed", str(e)))
            finally:
                c.close()


SMTP_SOURCE = tool("smtp-source") or "/usr/sbin/smtp-source"


class SmtpSourceLoad:
    """Postfix's smtp-source speaking LMTP (-L) to bob over two connections
    without pause, started again whenever a kill has broken it. It cannot
    say which of its messages were acknowledged, so bob's mailbox is checked
    for whole messages only; LmtpLoad's record of acknowledgements is what
    proves none was lost."""

    def __init__(self, p):
        self.p = p
        self.runs = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            proc = subprocess.Popen(
                [SMTP_SOURCE, "-L", "-s", "2", "-m", "1000000", "-l", "3000",
                 "-M", "client.example.org", "-f", SENDER, "-t", BOB,
                 f"127.0.0.1:{self.p.lmtp_port}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while proc.poll() is None and not self.stop.wait(0.05):
                pass
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            self.runs += 1


@pytest.mark.skipif(not os.path.exists(SMTP_SOURCE), reason="Postfix's smtp-source missing")
def test_random_sigkill_of_workers_under_lmtp_load(make_pillar):
    p = make_pillar(lmtp=True, workers=KILL_WORKERS)
    p.add_user(USER, PASSWORD)
    p.add_user(BOB, BOB_PASSWORD)
    load = LmtpLoad(p)
    source = SmtpSourceLoad(p)
    threads = [threading.Thread(target=load.run, args=(k,), daemon=True)
               for k in range(LOAD_CLIENTS)]
    threads.append(threading.Thread(target=source.run, daemon=True))
    for t in threads:
        t.start()
    rng = random.Random(2033)
    born = {}
    killed = set()
    kills = 0
    start = time.monotonic()
    deadline = start + 90
    try:
        wait_for(lambda: len(load.acked) >= 20, 30, "the load to get going")
        while kills < KILLS:
            assert time.monotonic() < deadline, f"only {kills} kills in 90 s"
            now = time.monotonic()
            live = p.workers("mail")
            for pid in live:
                born.setdefault(pid, now)
            # A worker that dies younger than a second is restarted only
            # after a back-off (crash-loop protection): kill older ones.
            ripe = [pid for pid in live
                    if pid not in killed and now - born[pid] >= 1.0 + rng.random() * 0.1]
            if not ripe:
                time.sleep(0.02)
                continue
            victim = rng.choice(ripe)
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:  # gone already (a pid is never reused this fast)
                continue
            killed.add(victim)
            kills += 1
            time.sleep(rng.uniform(0.02, 0.08))
        acked_at_last_kill = len(load.acked)
        # The server is whole again and the load goes on.
        wait_for(lambda: len(p.workers("mail")) == KILL_WORKERS, 20, "the master to restart workers")
        wait_for(lambda: len(load.acked) >= acked_at_last_kill + 20, 30,
                 "deliveries to go on after the last kill")
    finally:
        load.stop.set()
        source.stop.set()
        for t in threads:
            t.join(40)
    elapsed = time.monotonic() - start
    assert not any(t.is_alive() for t in threads), "a load thread hung"
    assert p.proc.poll() is None, "the master died"
    assert not load.other, load.other[:5]
    seen = reconcile(p, load.sent, load.acked)
    unacked_stored = len(set(seen) - load.acked)
    print(f"{kills} kills in {elapsed:.1f}s; sent {len(load.sent)}, acknowledged "
          f"{len(load.acked)}, stored {len(seen)} ({unacked_stored} stored but never "
          f"acknowledged), sessions broken {load.broken}")
    assert load.broken >= KILLS // 10, f"the kills broke only {load.broken} sessions"
    # smtp-source's messages to bob: all alike but for their headers, so
    # each stored one must carry the same whole body, once.
    theirs = p.check_names(BOB)
    bodies = {split_trace(d)[2].partition(b"\n\n")[2] for d in theirs.values()}
    ids = [re.search(rb"(?m)^Message-Id: (\S+)", split_trace(d)[2]).group(1)
           for d in theirs.values()]
    print(f"smtp-source: {source.runs} runs, {len(theirs)} messages stored")
    assert theirs and len(bodies) == 1, f"{len(bodies)} different bodies in {len(theirs)}"
    assert len(set(ids)) == len(ids), "an smtp-source message stored twice"
    files = p.stored(USER)
    with p.wait_unlocked(USER, PASSWORD) as c:
        assert c.stat() == (len(files), sum(vsize(d) for d in files.values()))
        c.ok("QUIT")


# -- what crashes leave behind ----------------------------------------------------------


def test_stale_tmp_and_spool_files_are_swept_at_start(make_pillar):
    # A delivery killed half-way leaves its file in tmp/ (or the spool).
    # Worker 0 sweeps what is older than 36 hours (the Maildir convention)
    # when it starts; newer files may belong to a delivery in progress and
    # stay, as do directories, and nothing outside tmp/ and the spool is
    # touched. Symlinks are removed, never followed.
    p = make_pillar(start=False)
    p.add_user(USER, PASSWORD)
    p.add_user(BOB, BOB_PASSWORD)
    now = time.time()
    old, recent = now - 37 * 3600, now - 35 * 3600
    st = os.stat(p.mail_root)
    gone, kept = [], []

    def put(path, when, kind="file"):
        if kind == "file":
            path.write_bytes(b"Subject: leftover\n\nhalf a mess")
        elif kind == "dir":
            path.mkdir()
        else:
            os.symlink("/etc/passwd", path)
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
        os.utime(path, (when, when), follow_symlinks=False)

    for address in (USER, BOB):
        md = p.ensure_maildir(address)
        put(md / "tmp" / "1600000000.M1P1.old", old)
        put(md / "tmp" / "1600000001.M1P1.oldlink", old, "symlink")
        gone += [md / "tmp" / "1600000000.M1P1.old", md / "tmp" / "1600000001.M1P1.oldlink"]
        put(md / "tmp" / "1600000002.M1P1.recent", recent)
        put(md / "tmp" / "1600000003.M1P1.fresh", now)
        put(md / "tmp" / "1600000004.M1P1.olddir", old, "dir")
        kept += [md / "tmp" / n for n in ("1600000002.M1P1.recent", "1600000003.M1P1.fresh",
                                          "1600000004.M1P1.olddir")]
        p.deliver(address, b"Subject: old but delivered\n\nkeep me\n")
        for f in p.files(address):
            os.utime(md / f, (old, old))
    spool = p.mail_root / ".spool"
    spool.mkdir(mode=0o700, exist_ok=True)
    os.chown(spool, st.st_uid, st.st_gid)
    put(spool / "1600000005.M1P1.old", old)
    put(spool / "1600000006.M1P1.fresh", now)
    gone.append(spool / "1600000005.M1P1.old")
    kept.append(spool / "1600000006.M1P1.fresh")
    p.start()
    wait_for(lambda: not any(os.path.lexists(f) for f in gone), 20,
             "the sweep to remove the stale files")
    wait_for(lambda: "event=cleanup" in p.log(), 10, "the sweep to log what it did")
    assert re.search(r"event=cleanup removed=5\b", p.log()), p.log()[-1000:]
    missing = [str(f) for f in kept if not os.path.lexists(f)]
    assert not missing, f"removed, but not stale: {missing}"
    assert os.path.isfile("/etc/passwd")
    for address, password in ((USER, PASSWORD), (BOB, BOB_PASSWORD)):
        with p.wait_unlocked(address, password) as c:
            assert c.stat()[0] == 1, "a message in new/ was swept"
            c.ok("QUIT")
