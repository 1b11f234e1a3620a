"""Byte-exact round trips: messages put into the Maildir by the test must come
back from RETR and TOP exactly as RFC 1939 says (LF -> CRLF, dot-stuffing,
".\\r\\n" terminator), and LIST/STAT must count exactly the octets RETR
sends before dot-stuffing."""

import pytest

from harness import PASSWORD, USER, message_lines, retr_wire, top_wire, vsize

HDR = b"From: a@example.org\nTo: alice@example.test\nSubject: tricky\n\n"

MESSAGES = {
    "plain": HDR + b"Hello.\nSecond line.\n",
    "8bit": HDR.replace(b"tricky", "Grüße €".encode()) + bytes(range(0x80, 0x100)) + b"\n"
    + "Ünïcödé ✓ 日本語\n".encode(),
    "nul_bytes": HDR + b"before\x00after\n\x00\n\x00\x00\x00\nend\n",
    "long_line_100k": HDR + b"x" * 100_000 + b"\nshort\n",
    "long_line_100k_no_newline": HDR + b"y" * 100_000,
    "long_dot_line": HDR + b"." + b"z" * 70_000 + b"\n",
    "no_final_newline": HDR + b"last line without newline",
    "no_final_newline_dot": HDR + b"line\n.",
    "empty": b"",
    "only_newline": b"\n",
    "single_dot_message": b".\n",
    "dot_lines": HDR + b".\n..\n.hidden\n...\nend\n.\n. \n",
    "starts_with_dot": b".first line is a dot line\n\nbody\n",
    "terminator_inside": HDR + b"a\r\n.\r\nb\n.\nc\n",
    "crlf_file": b"Subject: crlf\r\n\r\nline1\r\n.line2\r\nline3\r\n",
    "mixed_line_ends": b"Subject: mixed\r\n\nline1\nline2\r\nline3\n",
    "bare_cr_inside": HDR + b"foo\rbar\n\rstart\nend\r\r\n",
    "blank_lines": HDR + b"\n\n\nafter three blank lines\n\n",
    "no_body": b"Subject: header only\nX-Other: y\n",
    "no_body_no_newline": b"Subject: header only",
    "binary_all_bytes": HDR + bytes(range(256)) * 40 + b"\n",
    "big_1m": HDR + b"".join(b"%06d the quick brown fox jumps over the lazy dog\n" % i
                             for i in range(20000)),
}


@pytest.fixture(params=["with_sizes", "without_sizes"])
def named(request):
    return request.param == "with_sizes"


@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_retr_and_list_are_byte_exact(alice, case, named):
    data = MESSAGES[case]
    other = b"Subject: other\n\nother\n"
    alice.deliver(USER, other)
    uid = alice.deliver(USER, data, sizes=named)
    with alice.session(USER, PASSWORD) as c:
        assert c.stat() == (2, vsize(other) + vsize(data))
        assert c.ok("LIST 2") == f"+OK 2 {vsize(data)}".encode()
        assert c.list() == [(1, vsize(other)), (2, vsize(data))]
        assert c.ok("UIDL 2") == f"+OK 2 {uid}".encode()
        c.ok("RETR 2")
        got = c.multiline_raw(timeout=30)
        assert got == retr_wire(data), _diff(got, retr_wire(data))
        # The same again: nothing was consumed or altered by the first RETR.
        c.ok("RETR 2")
        assert c.multiline_raw(timeout=30) == retr_wire(data)
        c.ok("RETR 1")
        assert c.multiline_raw() == retr_wire(other)
        c.ok("QUIT")
    # RETR does not change the message file.
    md = alice.maildir(USER)
    files = [f for f in alice.files(USER) if uid in f]
    assert len(files) == 1
    assert (md / files[0]).read_bytes() == data


@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_top_is_byte_exact(alice, case):
    data = MESSAGES[case]
    alice.deliver(USER, data)
    body_lines = len(message_lines(data))
    with alice.session(USER, PASSWORD) as c:
        for n in sorted({0, 1, 2, 3, body_lines, body_lines + 5, 1000000}):
            c.ok(f"TOP 1 {n}")
            got = c.multiline_raw(timeout=30)
            assert got == top_wire(data, n), f"TOP 1 {n}: " + _diff(got, top_wire(data, n))
        c.ok("QUIT")


def test_top_counts_body_lines_not_header_lines(alice):
    data = b"A: 1\nB: 2\nC: 3\n\nb1\nb2\nb3\nb4\n"
    alice.deliver(USER, data)
    with alice.session(USER, PASSWORD) as c:
        c.ok("TOP 1 0")
        assert c.multiline() == [b"A: 1", b"B: 2", b"C: 3", b""]
        c.ok("TOP 1 2")
        assert c.multiline() == [b"A: 1", b"B: 2", b"C: 3", b"", b"b1", b"b2"]
        c.ok("TOP 1 4")
        assert c.multiline() == message_lines(data)
        c.ok("QUIT")


def test_stat_totals_many_messages(alice):
    datas = [MESSAGES[k] for k in sorted(MESSAGES)]
    for i, d in enumerate(datas):
        alice.deliver(USER, d, sizes=bool(i % 2))
    with alice.session(USER, PASSWORD) as c:
        assert c.stat() == (len(datas), sum(vsize(d) for d in datas))
        assert c.list() == [(i, vsize(d)) for i, d in enumerate(datas, 1)]
        c.ok("QUIT")


def _diff(got: bytes, want: bytes) -> str:
    if len(got) != len(want):
        where = f"lengths differ: got {len(got)}, want {len(want)}"
    else:
        where = "same length"
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return f"{where}; first difference at byte {i}: got {got[max(0, i - 20):i + 20]!r}, want {want[max(0, i - 20):i + 20]!r}"
    return f"{where}; one is a prefix of the other; tail got {got[-40:]!r} want {want[-40:]!r}"
