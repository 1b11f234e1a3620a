"""Fixtures for the integration tests (the machinery is in harness.py).

Every test gets its own Pillar instance: `pillar init` in a fresh directory,
the generated pillar.conf rewritten to listen on a free loopback port, and a
real `pillar serve --foreground` started from it. The server's log is attached
to the report of any test that fails.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from harness import BOB, BOB_PASSWORD, DEFAULT_SETTINGS, PASSWORD, USER, Pillar, simple_message


def pytest_sessionstart(session):
    """As root, `pillar init` creates the system accounts it needs (run_as,
    login_as) when they are missing. Tests run several at a time (pytest-
    xdist), and two useradd at once can fail on the password file's lock:
    so one init runs first, under a lock all test processes share."""
    if os.geteuid() != 0:
        return
    import fcntl
    import subprocess

    from harness import PILLAR_BIN

    with open(os.path.join(tempfile.gettempdir(), "pillar-test-accounts.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tmp = tempfile.mkdtemp(prefix="pillar-accounts-")
        os.chmod(tmp, 0o755)  # init's child, as run_as, works in there
        try:
            subprocess.run([PILLAR_BIN, "init", os.path.join(tmp, "inst")], check=True,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for inst in getattr(item, "_pillar_instances", []):
            text = inst.log()
            if len(text) > 30000:
                text = "...\n" + text[-30000:]
            rep.sections.append((f"pillar log ({inst.log_path})", text))
        # Logs of other programs a test started (title, path): HAProxy's.
        for title, path in getattr(item, "_extra_logs", []):
            try:
                text = Path(path).read_text(errors="replace")
            except OSError:
                continue
            if len(text) > 30000:
                text = "...\n" + text[-30000:]
            rep.sections.append((f"{title} ({path})", text))


@pytest.fixture
def make_pillar(request):
    """Factory: make_pillar(domain=True, start=True, smtp=False, lmtp=False,
    tls=False, pop3s=False, **settings) -> Pillar (see Pillar for smtp,
    lmtp, tls and pop3s)."""
    instances = []
    bases = []
    request.node._pillar_instances = instances

    def factory(domain=True, start=True, init_args=(), smtp=False, lmtp=False, tls=False,
                pop3s=False, **settings):
        base = Path(tempfile.mkdtemp(prefix="pillar-it-"))
        # The server drops privileges: the instance must be reachable by it.
        os.chmod(base, 0o755)
        bases.append(base)
        merged = dict(DEFAULT_SETTINGS)
        merged.update({k: str(v) for k, v in settings.items()})
        inst = Pillar(base, merged, init_args=init_args, smtp=smtp, lmtp=lmtp, tls=tls,
                      pop3s=pop3s)
        instances.append(inst)
        if domain:
            inst.add_domain()
        if start:
            inst.start()
        return inst

    yield factory

    problems = []
    for inst in instances:
        inst.finish()
        problems += inst.problems
    if not os.environ.get("PILLAR_KEEP_TMP"):
        for base in bases:
            shutil.rmtree(base, ignore_errors=True)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def pillar(make_pillar):
    """A running instance with domain example.test."""
    return make_pillar()


@pytest.fixture
def alice(pillar):
    """The running instance with mailbox alice@example.test."""
    pillar.add_user(USER, PASSWORD)
    return pillar


@pytest.fixture
def mailbox(alice):
    """alice with three messages; returns (pillar, [(uidl, data), ...])."""
    msgs = []
    for i in range(1, 4):
        data = simple_message(i)
        msgs.append((alice.deliver(USER, data), data))
    return alice, msgs


@pytest.fixture
def mta(make_pillar):
    """A running instance that takes mail over SMTP and LMTP (TCP and a unix
    socket), with mailboxes alice@ and bob@example.test."""
    p = make_pillar(smtp=True, lmtp="both")
    p.add_user(USER, PASSWORD)
    p.add_user(BOB, BOB_PASSWORD)
    return p
