"""Durability: the worker processes are killed with SIGKILL in the middle of
a stream of SMTP deliveries over several connections. Afterwards every
message that got its 250 is in the mailbox exactly once and intact, no
partial message is visible in new/ (or to POP3), the master has started new
workers, and delivery goes on. Leftovers in tmp/ or the spool are allowed: a
killed process cannot clean up; they are never shown to POP3."""

import hashlib
import os
import signal
import threading
import time

from harness import PASSWORD, USER, Closed, SmtpConn, lf, split_trace, vsize, wait_for

CLIENTS = 6
KILL_ROUNDS = 4
TARGET_ACKED = 400  # acknowledged messages before the stream stops
DEADLINE = 120.0


def make_message(client, seq):
    """A message whose size varies from about 1 KB to 130 KB, so kills land
    in the middle of writes and fsyncs, with its own ID and checksum."""
    mid = f"dur-{client}-{seq}@example.org"
    n = 10 + (hash((client, seq)) % 1600)
    line = hashlib.sha256(mid.encode()).hexdigest().encode()  # 64 octets
    body = b"".join(b"%05d " % i + line + b"\r\n" for i in range(n))
    return mid, (f"From: <sender@example.org>\r\nTo: <{USER}>\r\nSubject: stream\r\n"
                 f"Message-ID: <{mid}>\r\n\r\n").encode() + body


class Stream:
    def __init__(self, p):
        self.p = p
        self.lock = threading.Lock()
        self.attempted = {}  # message id -> message, for every message sent
        self.acked = set()  # ids that got 250 after the data
        self.broken = 0  # sessions that ended in a dropped connection
        self.other = []  # replies that were neither 250 nor a drop
        self.stop = threading.Event()
        self.deadline = time.monotonic() + DEADLINE

    def client(self, k):
        seq = 0
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                c = SmtpConn(self.p.smtp_port, timeout=20)
            except (OSError, Closed, TimeoutError, AssertionError):
                time.sleep(0.02)  # the listener is the master's: only a moment
                continue
            try:
                c.ehlo()
                while not self.stop.is_set():
                    mid, msg = make_message(k, seq)
                    seq += 1
                    with self.lock:
                        self.attempted[mid] = msg
                    c.send(b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                           % USER.encode())
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
            except AssertionError as e:  # a malformed reply
                with self.lock:
                    self.other.append(("malformed", str(e)))
            finally:
                c.close()

    def acked_count(self):
        with self.lock:
            return len(self.acked)


def test_sigkill_workers_during_delivery(make_pillar):
    p = make_pillar(smtp=True, workers=2)
    p.add_user(USER, PASSWORD)
    first_workers = p.workers("mail")
    assert len(first_workers) == 2, first_workers

    s = Stream(p)
    threads = [threading.Thread(target=s.client, args=(k,), daemon=True) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    killed = []
    try:
        for rnd in range(1, KILL_ROUNDS + 1):
            goal = rnd * TARGET_ACKED // (KILL_ROUNDS + 1)
            wait_for(lambda: s.acked_count() >= goal, 60,
                     f"{goal} acknowledged deliveries before kill round {rnd}")
            victims = p.workers("mail")
            assert victims, "no workers to kill"
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            killed += victims
            # The master starts new workers.
            wait_for(lambda: len(p.workers("mail")) == 2 and not set(p.workers("mail")) & set(killed), 20,
                     "the master to replace the killed workers")
        wait_for(lambda: s.acked_count() >= TARGET_ACKED, 60,
                 f"{TARGET_ACKED} acknowledged deliveries in all")
    finally:
        s.stop.set()
        for t in threads:
            t.join(40)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    assert p.proc.poll() is None, "the master died"
    assert s.broken >= KILL_ROUNDS, f"the kills broke only {s.broken} sessions"
    # Only the kills may disturb the stream: no refusal and no garbage.
    assert not s.other, s.other[:5]

    files = p.check_names(USER)  # also: S= and W= match every file
    seen = {}
    for name, data in files.items():
        return_path, _, rest = split_trace(data)
        assert return_path == b"<sender@example.org>", name
        mid = rest.split(b"Message-ID: <", 1)[1].split(b">", 1)[0].decode()
        assert mid in s.attempted, f"{name}: unknown message {mid}"
        assert rest == lf(s.attempted[mid]), f"{name}: message {mid} is not intact"
        assert mid not in seen, f"{mid} stored twice: {seen[mid]} and {name}"
        seen[mid] = name
    missing = s.acked - set(seen)
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:3]}"
    print(f"acknowledged {len(s.acked)}, stored {len(seen)}, attempted {len(s.attempted)}, "
          f"sessions broken {s.broken}, workers killed {len(killed)}")

    # POP3 sees exactly the complete messages.
    with p.wait_unlocked(USER, PASSWORD) as c:
        assert c.stat() == (len(files), sum(vsize(d) for d in files.values()))
        uidls = c.uidls()
        assert len({u for _, u in uidls}) == len(files)
        c.ok("QUIT")

    # And delivery goes on.
    with SmtpConn(p.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@example.org>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        mid, msg = make_message(99, 0)
        c.data(msg, 250)
    assert len(p.stored(USER)) == len(files) + 1


def spooled_bytes(p):
    total = 0
    for f in p.partial_files():
        try:
            total += os.path.getsize(f)
        except OSError:
            pass
    return total


def test_sigkill_during_data_leaves_nothing_visible(make_pillar):
    # A worker killed while it holds a half-received message: the message was
    # never acknowledged and must not appear in new/, ever.
    p = make_pillar(smtp=True, workers=1)
    p.add_user(USER, PASSWORD)
    c = SmtpConn(p.smtp_port)
    c.ehlo()
    c.expect("MAIL FROM:<sender@example.org>", 250)
    c.expect(f"RCPT TO:<{USER}>", 250)
    c.expect("DATA", 354)
    c.send(b"Subject: half\r\n\r\n" + b"partial line\r\n" * 20000)
    # The server is writing the message (into its spool or a tmp/ file).
    wait_for(lambda: spooled_bytes(p) > 0, 20, "the half message to reach the disk")
    victim = p.workers("mail")[0]
    os.kill(victim, signal.SIGKILL)
    assert c.read_to_eof() == b""
    c.close()
    wait_for(lambda: len(p.workers("mail")) == 1 and victim not in p.workers("mail"), 20,
             "the master to replace the killed worker")
    assert p.stored(USER) == {}
    with SmtpConn(p.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@example.org>", 250)
        c.expect(f"RCPT TO:<{USER}>", 250)
        c.data(b"Subject: whole\r\n\r\nwhole\r\n", 250)
    files = p.check_names(USER)
    assert [split_trace(d)[2] for d in files.values()] == [b"Subject: whole\n\nwhole\n"]
