"""Every RFC 1939 / RFC 2449 command, in the states where it is allowed and
refused elsewhere; Python's poplib as the client where it can be."""

import os
import poplib
import re

from harness import (
    PASSWORD,
    USER,
    message_lines,
    simple_message,
    vsize,
)

REQUIRED_CAPS = [
    "TOP",
    "UIDL",
    "USER",
    "RESP-CODES",
    "AUTH-RESP-CODE",
    "PIPELINING",
    "EXPIRE NEVER",
    "LOGIN-DELAY 0",
]


def capa_lines(c):
    c.ok("CAPA")
    return [l.decode() for l in c.multiline()]


def test_capa_before_login_lists_required_capabilities(alice):
    with alice.conn() as c:
        caps = capa_lines(c)
        for cap in REQUIRED_CAPS:
            assert cap in caps, f"CAPA lacks {cap!r}: {caps}"
        assert any(re.fullmatch(r"IMPLEMENTATION \S.*", l) for l in caps), caps
        # Every line is a capability tag, possibly with arguments.
        for l in caps:
            assert re.fullmatch(r"[A-Z0-9][A-Z0-9-]*( \S+)*", l), l
        c.ok("QUIT")


def test_capa_after_login(alice):
    with alice.session(USER, PASSWORD) as c:
        caps = capa_lines(c)
        for cap in ("TOP", "UIDL", "PIPELINING", "RESP-CODES"):
            assert cap in caps, caps
        c.ok("QUIT")


def test_poplib_every_command(mailbox):
    p, msgs = mailbox
    sizes = [vsize(d) for _, d in msgs]
    pop = poplib.POP3("127.0.0.1", p.port, timeout=15)
    try:
        assert pop.getwelcome().startswith(b"+OK")
        caps = pop.capa()
        assert "UIDL" in caps and "TOP" in caps
        assert pop.user(USER).startswith(b"+OK")
        assert pop.pass_(PASSWORD).startswith(b"+OK")

        assert pop.stat() == (3, sum(sizes))

        resp, lines, _ = pop.list()
        assert resp.startswith(b"+OK")
        assert lines == [f"{i} {s}".encode() for i, s in enumerate(sizes, 1)]
        assert pop.list(2) == f"+OK 2 {sizes[1]}".encode()

        resp, lines, _ = pop.uidl()
        assert lines == [f"{i} {u}".encode() for i, (u, _) in enumerate(msgs, 1)]
        assert pop.uidl(3) == f"+OK 3 {msgs[2][0]}".encode()

        for i, (_, data) in enumerate(msgs, 1):
            resp, lines, _ = pop.retr(i)
            assert resp.startswith(b"+OK")
            assert lines == message_lines(data), f"RETR {i}"

        resp, lines, _ = pop.top(1, 0)
        header = message_lines(msgs[0][1])
        blank = header.index(b"")
        assert lines == header[: blank + 1]
        resp, lines, _ = pop.top(2, 1)
        assert lines == message_lines(msgs[1][1])[: blank + 2]

        assert pop.noop().startswith(b"+OK")

        assert pop.dele(3).startswith(b"+OK")
        assert pop.stat() == (2, sizes[0] + sizes[1])
        assert pop.rset().startswith(b"+OK")
        assert pop.stat() == (3, sum(sizes))

        assert pop.dele(1).startswith(b"+OK")
        assert pop.quit().startswith(b"+OK")
    finally:
        pop.close()

    # The deletion took effect at QUIT and only for message 1.
    assert p.uniques_on_disk(USER) == sorted(u for u, _ in msgs[1:])
    pop = poplib.POP3("127.0.0.1", p.port, timeout=15)
    try:
        pop.user(USER)
        pop.pass_(PASSWORD)
        assert pop.stat() == (2, sizes[1] + sizes[2])
        _, lines, _ = pop.uidl()
        assert lines == [f"1 {msgs[1][0]}".encode(), f"2 {msgs[2][0]}".encode()]
        pop.quit()
    finally:
        pop.close()


def test_apop_is_refused_with_a_reason_and_user_pass_still_works(alice):
    with alice.conn() as c:
        reply = c.err(f"APOP {USER} c4c9334bac560ecc979e58001b3e22fb")
        assert len(reply) > len(b"-ERR "), "APOP refusal gives no reason"
        c.login(USER, PASSWORD)
        assert c.stat() == (0, 0)
        c.ok("QUIT")


def test_transaction_commands_refused_before_login(mailbox):
    p, _ = mailbox
    cmds = ["STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 0", "UIDL",
            "UIDL 1", "PASS " + PASSWORD]  # the last: PASS without USER
    # A few per connection: the server may drop a client after many bad
    # commands.
    for i in range(0, len(cmds), 4):
        with p.conn() as c:
            for cmd in cmds[i : i + 4]:
                c.err(cmd)
            # None of that was a login attempt: the connection still logs in.
            c.login(USER, PASSWORD)
            assert c.stat()[0] == 3
            c.ok("QUIT")
    assert len(p.files(USER)) == 3


def test_authorization_commands_refused_after_login(mailbox):
    p, _ = mailbox
    with p.session(USER, PASSWORD) as c:
        c.err("USER " + USER)
        c.err("PASS " + PASSWORD)
        c.err(f"APOP {USER} c4c9334bac560ecc979e58001b3e22fb")
        assert c.stat()[0] == 3
        c.ok("QUIT")
    # A fresh client afterwards finds the mailbox as it was.
    with p.wait_unlocked(USER, PASSWORD) as c:
        assert c.stat()[0] == 3
        c.ok("QUIT")


def test_quit_in_authorization_state_closes(alice):
    with alice.conn() as c:
        c.ok("QUIT")
        assert c.read_to_eof() == b""


def test_quit_in_transaction_state_closes(mailbox):
    p, _ = mailbox
    with p.session(USER, PASSWORD) as c:
        c.ok("QUIT")
        assert c.read_to_eof() == b""


def test_keywords_are_case_insensitive(mailbox):
    p, msgs = mailbox
    with p.conn() as c:
        c.ok("user " + USER)
        c.ok("Pass " + PASSWORD)
        c.ok("noop")
        assert c.ok("stat").startswith(b"+OK 3 ")
        assert c.ok("uidl 2") == f"+OK 2 {msgs[1][0]}".encode()
        c.ok("List")
        assert len(c.multiline()) == 3
        c.ok("quit")


def test_password_with_spaces(alice):
    alice.add_user("bob@example.test", "two words  and more")
    with alice.conn() as c:
        c.login("bob@example.test", "two words  and more")
        c.ok("QUIT")


def test_username_is_case_insensitive(mailbox):
    p, _ = mailbox
    with p.conn() as c:
        c.login(USER.upper(), PASSWORD)
        assert c.stat()[0] == 3
        c.ok("QUIT")


def test_new_mailbox_without_maildir_is_empty(alice):
    alice.add_user("new@example.test", "fresh-Pass-9")
    with alice.session("new@example.test", "fresh-Pass-9") as c:
        assert c.ok("STAT") == b"+OK 0 0"
        assert c.list() == []
        assert c.uidls() == []
        c.err("RETR 1")
        c.err("LIST 1")
        c.ok("QUIT")


def test_scan_listing_formats(mailbox):
    p, msgs = mailbox
    with p.session(USER, PASSWORD) as c:
        for i, (uid, data) in enumerate(msgs, 1):
            assert c.ok(f"LIST {i}") == f"+OK {i} {vsize(data)}".encode()
            assert c.ok(f"UIDL {i}") == f"+OK {i} {uid}".encode()
        assert c.list() == [(i, vsize(d)) for i, (_, d) in enumerate(msgs, 1)]
        assert c.uidls() == [(i, u) for i, (u, _) in enumerate(msgs, 1)]
        assert c.stat() == (3, sum(vsize(d) for _, d in msgs))
        c.ok("QUIT")


def test_deleted_messages_leave_stat_and_listings(mailbox):
    p, msgs = mailbox
    with p.session(USER, PASSWORD) as c:
        c.ok("DELE 2")
        assert c.stat() == (2, vsize(msgs[0][1]) + vsize(msgs[2][1]))
        # Message numbers do not change inside the session (RFC 1939 §5).
        assert [n for n, _ in c.list()] == [1, 3]
        assert [n for n, _ in c.uidls()] == [1, 3]
        assert c.ok("UIDL 3") == f"+OK 3 {msgs[2][0]}".encode()
        c.ok("RSET")
        c.ok("QUIT")
    assert len(p.files(USER)) == 3


def test_messages_ordered_by_file_name_across_new_and_cur(alice):
    uniques = ["1700000300.M3P9.host", "1700000100.M1P9.host", "1700000250.M2P9.host",
               "1700000150.M4P9.host"]
    for i, u in enumerate(uniques):
        alice.deliver(USER, simple_message(i), unique=u, subdir="cur" if i % 2 else "new")
    with alice.session(USER, PASSWORD) as c:
        assert [u for _, u in c.uidls()] == sorted(uniques)
        c.ok("QUIT")


def test_message_in_cur_with_flags(alice):
    data = simple_message(1)
    name = f"1700000001.M7P7.host,S={len(data)},W={vsize(data)}:2,S"
    alice.deliver(USER, data, name=name, subdir="cur")
    with alice.session(USER, PASSWORD) as c:
        assert c.uidls() == [(1, "1700000001.M7P7.host")]
        assert c.list() == [(1, vsize(data))]
        c.ok("RETR 1")
        assert c.multiline() == message_lines(data)
        c.ok("QUIT")


def test_sizes_computed_for_names_without_them_and_recorded(alice):
    data = b"Subject: no sizes\n\nline one\r\nline two\nlast"
    unique = alice.deliver(USER, data, sizes=False)
    with alice.session(USER, PASSWORD) as c:
        assert c.list() == [(1, vsize(data))]
        assert c.uidls() == [(1, unique)]
        c.ok("QUIT")
    files = alice.files(USER)
    assert len(files) == 1
    name = files[0].split("/", 1)[1]
    assert name.startswith(unique + ","), name
    assert f",S={len(data)}" in name and f",W={vsize(data)}" in name, name


def test_sizes_computed_when_the_file_cannot_be_renamed(alice):
    data = b"Subject: read-only\n\nbody\n"
    unique = alice.deliver(USER, data, sizes=False)
    new = alice.maildir(USER) / "new"
    cur = alice.maildir(USER) / "cur"
    os.chmod(new, 0o555)
    os.chmod(cur, 0o555)
    try:
        with alice.session(USER, PASSWORD) as c:
            assert c.list() == [(1, vsize(data))]
            assert c.uidls() == [(1, unique)]
            c.ok("RETR 1")
            assert c.multiline() == message_lines(data)
            c.ok("QUIT")
    finally:
        os.chmod(new, 0o700)
        os.chmod(cur, 0o700)


def test_sizes_come_from_the_file_name(alice):
    # DESIGN: sizes are read from S=/W= without a stat per message. A name
    # that records W=5000 is listed as 5000 octets.
    data = b"Subject: x\n\nshort\n"
    alice.deliver(USER, data, name=f"1700000001.M1P1.host,S={len(data)},W=5000")
    with alice.session(USER, PASSWORD) as c:
        assert c.list() == [(1, 5000)]
        assert c.stat() == (1, 5000)
        c.ok("QUIT")


def test_noop_and_rset_reply(mailbox):
    p, _ = mailbox
    with p.session(USER, PASSWORD) as c:
        c.ok("NOOP")
        c.ok("RSET")
        assert c.stat()[0] == 3
        c.ok("QUIT")


def test_greeting_does_not_offer_apop(alice):
    # APOP is not offered yet, so the greeting must not advertise it with a
    # <timestamp> banner (RFC 1939 §7: the timestamp means APOP is available).
    with alice.conn() as c:
        assert not re.search(rb"<[^>]+@[^>]+>", c.greeting), c.greeting
        c.ok("QUIT")


def test_long_unique_names_get_a_stable_short_uidl(alice):
    long1 = "1700000001." + "a" * 100
    long2 = "1700000002." + "a" * 100
    alice.deliver(USER, simple_message(1), unique=long1)
    alice.deliver(USER, simple_message(2), unique=long2)

    def uidls():
        c = alice.wait_unlocked(USER, PASSWORD)
        out = [u for _, u in c.uidls()]  # the helper checks 1-70 printable chars
        c.ok("QUIT")
        c.close()
        return out

    first = uidls()
    assert len(first) == 2 and first[0] != first[1]
    assert uidls() == first
    alice.restart()
    assert uidls() == first


def test_many_messages(alice):
    n = 3000
    datas = [simple_message(i) for i in range(n)]
    uids = [alice.deliver(USER, d, sizes=bool(i % 3)) for i, d in enumerate(datas)]
    with alice.session(USER, PASSWORD) as c:
        assert c.stat() == (n, sum(vsize(d) for d in datas))
        assert c.list() == [(i, vsize(d)) for i, d in enumerate(datas, 1)]
        assert [u for _, u in c.uidls()] == uids
        c.ok(f"RETR {n}")
        assert c.multiline() == message_lines(datas[-1])
        for i in range(1, n + 1, 2):
            c.send(f"DELE {i}\r\n")
        for i in range(1, n + 1, 2):
            assert c.line().startswith(b"+OK"), i
        c.ok("QUIT")
    assert alice.uniques_on_disk(USER) == sorted(uids[1::2])
