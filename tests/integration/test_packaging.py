"""Documentation and packaging: `make install`, the man pages, the systemd
unit and the fail2ban filter.

The man pages are checked against the program itself: every command that
`pillar help` lists, every verb and long option its --help shows, and every
key of the config parser (the key table in src/core/config.c, cross-checked
with `pillar check --verbose`) must be described, and each default the
config page states must be the default the parser really uses. The fail2ban
filter is run with `fail2ban-regex` over the log of a real server that saw
failed and successful logins over POP3 and SMTP.

Debian packages used here: man-db and groff-base (man pages), fail2ban
(fail2ban-regex), systemd (systemd-analyze). A missing one is installed
with apt-get when running as root; otherwise the test is skipped with the
reason.
"""

import os
import poplib
import re
import shutil
import smtplib
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness import IO_TIMEOUT, PASSWORD, PILLAR_BIN, REPO, USER, is_root

MAN8 = REPO / "man" / "pillar.8"
MAN5 = REPO / "man" / "pillar.conf.5"
CONTRIB = REPO / "contrib"
FILTER = CONTRIB / "fail2ban" / "filter.d" / "pillar.conf"
JAIL = CONTRIB / "fail2ban" / "jail.d" / "pillar.local"
UNIT = CONTRIB / "pillar.service"
EXAMPLE_CONF = CONTRIB / "pillar.conf.example"

# What `make install PREFIX=... ` puts where (relative to DESTDIR + PREFIX).
INSTALLED = {
    "sbin/pillar": 0o755,
    "share/man/man8/pillar.8": 0o644,
    "share/man/man5/pillar.conf.5": 0o644,
    "lib/systemd/system/pillar.service": 0o644,
    "share/doc/pillar/pillar.conf.example": 0o644,
    "share/doc/pillar/fail2ban/filter.d/pillar.conf": 0o644,
    "share/doc/pillar/fail2ban/jail.d/pillar.local": 0o644,
}


# --------------------------------------------------------------------------
# Helpers


_apt_updated = False


def need_tool(name, package):
    """The path of a command, installing its Debian package when it is
    missing and we are root; skips the test when it cannot be had."""
    global _apt_updated
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path:
        return path
    if not is_root() or not shutil.which("apt-get"):
        pytest.skip(f"{name} not installed (Debian package {package}) and cannot install it "
                    f"without root and apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for attempt in range(2):
        if attempt == 1 or not _apt_updated:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
            _apt_updated = True
        r = subprocess.run(["apt-get", "install", "-y", "-q", package], capture_output=True,
                           env=env, timeout=900)
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if path:
            return path
    pytest.skip(f"{name} not available: apt-get install {package} failed: "
                f"{r.stderr.decode(errors='replace').strip()[-300:]}")


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 120)
    kw.setdefault("stdin", subprocess.DEVNULL)
    r = subprocess.run([str(c) for c in cmd], **kw)
    r.out = r.stdout.decode(errors="replace") if isinstance(r.stdout, bytes) else (r.stdout or "")
    r.err = r.stderr.decode(errors="replace") if isinstance(r.stderr, bytes) else (r.stderr or "")
    return r


def pillar(*args, **kw):
    return run([PILLAR_BIN, *args], **kw)


def man_plain(path: Path) -> str:
    """The page's source with the roff markup taken out, for searching:
    font changes and escapes removed, request names dropped, quotes gone."""
    text = path.read_text()
    text = re.sub(r"^\.\\\".*$", "", text, flags=re.M)  # comments
    text = re.sub(r"\\f[BIRP]", "", text)
    text = text.replace("\\-", "-").replace("\\(aq", "'").replace("\\(dq", '"')
    text = re.sub(r"\\\(\w\w", " ", text)
    text = re.sub(r"^\.(?:B|I|BI|IB|BR|RB|IR|RI|SS|SH|TP|TQ|IP|PP|RS|RE|EX|EE|SY|YS)\b ?",
                  "", text, flags=re.M)
    text = text.replace('"', "")
    return text


def help_commands():
    """{command: the rest of its line} from `pillar help`."""
    r = pillar("help")
    assert r.returncode == 0, r.err
    cmds = {}
    for line in r.out.splitlines():
        m = re.match(r"^  pillar (\S+)(.*)$", line)
        if m:
            cmds[m.group(1)] = m.group(2).strip()
    assert len(cmds) >= 10, f"could not read the command list from `pillar help`:\n{r.out}"
    return cmds


def command_help(cmd):
    r = pillar(cmd, "--help")
    assert r.returncode == 0, f"pillar {cmd} --help failed: {r.err}"
    return r.out


def command_verbs(cmd, text):
    """The verbs in a command's usage lines ('pillar user add ...' -> add)."""
    verbs = []
    for m in re.finditer(rf"^(?:usage:)?\s+pillar {re.escape(cmd)} ([a-z]+)\b", text, re.M):
        if m.group(1) not in verbs:
            verbs.append(m.group(1))
    return verbs


def parser_keys():
    """The keys of the config parser's table, in order."""
    src = (REPO / "src" / "core" / "config.c").read_text()
    table = re.search(r"static const struct config_key keys\[\] = \{(.*?)\n\};", src, re.S)
    assert table, "key table not found in src/core/config.c"
    keys = re.findall(r'\{"([a-z0-9_]+)",\s*set_\w+,\s*(?:true|false)\}', table.group(1))
    assert keys, "no keys found in the key table"
    return keys


def check_verbose(conf: Path):
    """{key: [values]} from `pillar check --verbose`."""
    r = pillar("check", "-c", conf, "--verbose")
    assert r.returncode == 0, f"pillar check failed on {conf}:\n{conf.read_text()}\n{r.err}"
    out = {}
    for line in r.out.splitlines()[1:]:
        k, _, v = line.partition(" = ")
        out.setdefault(k, []).append(v)
    return out


def key_sections(page: str):
    """{key: its text} for the `.TP / .BI key " = " value` items of
    pillar.conf(5). Of a .TQ pair (tls_cert, tls_key) the first one's text
    runs on through the second's."""
    sections = {}
    items = list(re.finditer(r'^\.(?:TP|TQ)\n\.BI ([a-z0-9_]+) " = "', page, re.M))
    for m in items:
        end = len(page)
        nxt = re.search(r"^\.(?:TP\n\.BI [a-z0-9_]+ \" = \"|SS|SH)", page[m.end():], re.M)
        if nxt:
            end = m.end() + nxt.start()
        sections[m.group(1)] = page[m.end():end]
    return sections


@pytest.fixture
def tmp(request):
    d = Path(tempfile.mkdtemp(prefix="pillar-pkg-"))
    os.chmod(d, 0o755)
    yield d
    if not os.environ.get("PILLAR_KEEP_TMP"):
        shutil.rmtree(d, ignore_errors=True)


def make_install(destdir: Path, prefix: str):
    """`make install` into destdir, from the same kind of build as the
    binary under test (a sanitizer build when PILLAR_BIN is one)."""
    args = ["make", "-s", "-C", REPO, "install", f"DESTDIR={destdir}", f"PREFIX={prefix}"]
    if "/build/san/" in str(Path(PILLAR_BIN).resolve()):
        args.append("SANITIZE=1")
    r = run(args, timeout=900)
    assert r.returncode == 0, f"make install failed:\n{r.out}\n{r.err}"


# --------------------------------------------------------------------------
# make install


@pytest.mark.parametrize("prefix", ["/usr", "/usr/local"])
def test_make_install_puts_every_file_in_place(tmp, prefix):
    dest = tmp / "dest"
    make_install(dest, prefix)
    root = dest / prefix.lstrip("/")
    for rel, mode in INSTALLED.items():
        f = root / rel
        assert f.is_file(), f"make install did not install {prefix}/{rel}"
        assert f.stat().st_mode & 0o7777 == mode, f"{rel}: mode {oct(f.stat().st_mode & 0o7777)}"
    # Nothing outside PREFIX (no /etc, no /var): config and state are the
    # administrator's.
    outside = [p for p in dest.rglob("*") if p.is_file() and not str(p).startswith(str(root) + "/")]
    assert not outside, f"make install wrote outside PREFIX: {outside}"

    r = run([root / "sbin/pillar", "--version"])
    assert r.returncode == 0 and r.out.startswith("pillar "), r.out + r.err
    assert (root / "share/man/man8/pillar.8").read_bytes() == MAN8.read_bytes()
    assert (root / "share/man/man5/pillar.conf.5").read_bytes() == MAN5.read_bytes()
    assert (root / "share/doc/pillar/fail2ban/filter.d/pillar.conf").read_bytes() == FILTER.read_bytes()
    # The unit runs the installed binary, wherever PREFIX put it.
    unit = (root / "lib/systemd/system/pillar.service").read_text()
    execs = re.findall(r"^Exec\w*=(\S+)", unit, re.M)
    assert execs and all(e == f"{prefix}/sbin/pillar" for e in execs), execs

    r = run(["make", "-s", "-C", REPO, "uninstall", f"DESTDIR={dest}", f"PREFIX={prefix}"])
    assert r.returncode == 0, r.err
    left = [p for p in dest.rglob("*") if p.is_file()]
    assert not left, f"make uninstall left {left}"


# --------------------------------------------------------------------------
# The man pages


@pytest.mark.parametrize("page", [MAN8, MAN5], ids=["pillar.8", "pillar.conf.5"])
def test_man_page_renders_without_warnings(page):
    man = need_tool("man", "man-db")
    groff = need_tool("groff", "groff-base")
    env = dict(os.environ, LC_ALL="C.UTF-8", MANROFFSEQ="", MANWIDTH="80")
    r = run([man, "--warnings", "-E", "UTF-8", "-l", page], env=env)
    assert r.returncode == 0, r.err
    assert r.err.strip() == "", f"man warnings for {page.name}:\n{r.err}"
    assert "NAME" in r.out and "SEE ALSO" in r.out
    r = run([groff, "-man", "-ww", "-z", page])
    assert r.returncode == 0 and r.err.strip() == "", f"groff warnings for {page.name}:\n{r.err}"
    # No roff request leaked into the text (a line that began with a dot or
    # quote by mistake would be swallowed; a typo'd macro shows up raw).
    r = run([man, "-l", page], env=env)
    leaked = [l for l in r.out.splitlines() if re.match(r"^\s*\.[A-Z]{1,2}\b", l)]
    assert not leaked, leaked


def test_pillar8_describes_every_command_verb_and_option():
    page = man_plain(MAN8)
    headings = re.findall(r'^\.SS "pillar ([a-z]+(?:\\-[a-z]+)*)(.*?)"\s*$', MAN8.read_text(), re.M)
    documented = {name.replace("\\-", "-"): rest for name, rest in headings}
    cmds = help_commands()

    missing = [c for c in cmds if c not in documented]
    assert not missing, f"commands `pillar help` lists but pillar(8) has no section for: {missing}"
    extra = [c for c in documented if c not in cmds]
    assert not extra, f"pillar(8) describes commands `pillar help` does not list: {extra}"

    for cmd in cmds:
        text = command_help(cmd)
        # Verbs: the same set in --help's usage lines, in `pillar help`'s
        # synopsis and in the man page's section heading.
        verbs = command_verbs(cmd, text)
        if verbs:
            heading = documented[cmd].replace("\\", "").strip()
            man_verbs = heading.split()[0].split("|") if heading else []
            assert sorted(man_verbs) == sorted(verbs), \
                f"pillar {cmd}: --help has verbs {verbs}, pillar(8) heading has {man_verbs}"
            synopsis_verbs = cmds[cmd].split()[0].split("|")
            assert sorted(synopsis_verbs) == sorted(verbs), \
                f"pillar {cmd}: --help has verbs {verbs}, `pillar help` shows {synopsis_verbs}"
            for v in verbs:
                assert f"pillar {cmd} {v}" in page, f"pillar(8) does not describe `pillar {cmd} {v}`"
        # Every long option --help shows is described.
        for opt in sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", text))):
            assert opt in page, f"pillar {cmd} --help shows {opt}, pillar(8) does not mention it"


def test_pillar_conf5_describes_every_key_with_its_real_default(tmp):
    keys = parser_keys()
    # The binary agrees with the table: every key it dumps is in it, and a
    # config that sets every list key dumps every key.
    full = tmp / "full.conf"
    full.write_text(
        f"state_dir = {tmp}/state\n"
        "pop3_listen = 127.0.0.1:1110\npop3s_listen = 127.0.0.1:1995\n"
        "smtp_listen = 127.0.0.1:2525\nlmtp_listen = 127.0.0.1:2424\n"
        f"tls_cert = {tmp}/c.pem\ntls_key = {tmp}/k.pem\n"
        "trusted_proxies = 10.0.0.0/8\n"
        "directory = postgresql://pillar@db.example/pillar\n"
        "mail_directory = postgresql://pillar_mail@db.example/pillar\n")
    dumped = check_verbose(full)
    assert sorted(dumped) == sorted(keys), \
        f"`pillar check --verbose` shows {sorted(dumped)}, the key table has {sorted(keys)}"

    src = MAN5.read_text()
    sections = key_sections(src)
    missing = [k for k in keys if k not in sections]
    assert not missing, f"keys the parser knows but pillar.conf(5) does not describe: {missing}"
    extra = [k for k in sections if k not in keys]
    assert not extra, f"pillar.conf(5) describes keys the parser does not know: {extra}"

    # Every key's section has an example, and the example is a valid line.
    for key in keys:
        sec = sections[key]
        assert "default" in sec.lower(), f"pillar.conf(5): no default stated for {key}"
        examples = re.findall(rf"^\.?B? ?({key} = \S+)$", sec, re.M)
        assert examples, f"pillar.conf(5): no example for {key}"
        conf = tmp / f"ex-{key}.conf"
        lines = [] if key == "state_dir" else [f"state_dir = {tmp}/state"]
        lines += examples
        if key in ("tls_cert", "tls_key"):
            lines = [l for l in lines if not l.startswith(("tls_cert", "tls_key"))]
            lines += [l for l in re.findall(r"^(tls_(?:cert|key) = \S+)$", sec, re.M)]
        if key == "mail_directory":
            lines += ["directory = postgresql://pillar@db.example/pillar"]
        if key == "pop3s_listen":
            lines += [f"tls_cert = {tmp}/c.pem", f"tls_key = {tmp}/k.pem"]
        conf.write_text("\n".join(lines) + "\n")
        r = pillar("check", "-c", conf)
        assert r.returncode == 0, f"pillar.conf(5) example for {key} is refused: {r.err}"

    # Each stated literal default is the parser's default: setting the key
    # to it changes nothing in the effective config.
    minimal = tmp / "minimal.conf"
    minimal.write_text(f"state_dir = {tmp}/state\n")
    defaults = check_verbose(minimal)
    checked = []
    for key in keys:
        m = re.search(r"Default:\s*\n\.BR? ([^\s]+)(?: \.)?\s*$", sections[key], re.M)
        if not m:
            continue
        value = m.group(1).rstrip(".")
        conf = tmp / f"default-{key}.conf"
        conf.write_text(f"state_dir = {tmp}/state\n{key} = {value}\n")
        assert check_verbose(conf) == defaults, \
            f"pillar.conf(5) says {key} defaults to {value}; the parser's default differs"
        checked.append(key)
    # Every key that has a fixed default (not computed from the machine or
    # from state_dir) was checked.
    computed = {"state_dir", "mail_root", "hostname", "workers"}
    fixed = [k for k in defaults if k not in computed]
    assert sorted(checked) == sorted(fixed), (checked, fixed)
    assert defaults["mail_root"] == [f"{tmp}/state/mail"]
    assert "state_dir" in sections["mail_root"] and "/mail" in sections["mail_root"]


def test_example_configs_are_valid(tmp):
    r = pillar("check", "-c", EXAMPLE_CONF)
    assert r.returncode == 0, f"contrib/pillar.conf.example: {r.err}"
    # The EXAMPLE section of pillar.conf(5).
    src = MAN5.read_text()
    block = re.search(r"^\.SH EXAMPLE\n.*?^\.EX\n(.*?)^\.EE", src, re.S | re.M)
    assert block, "pillar.conf(5) has no EXAMPLE block"
    conf = tmp / "man-example.conf"
    conf.write_text(block.group(1).replace("\\-", "-"))
    r = pillar("check", "-c", conf)
    assert r.returncode == 0, f"the EXAMPLE of pillar.conf(5) is refused: {r.err}"


# --------------------------------------------------------------------------
# fail2ban


class SourcePOP3(poplib.POP3):
    """poplib.POP3 connecting from a given loopback address."""

    def __init__(self, host, port, source):
        self._source = source
        super().__init__(host, port, timeout=IO_TIMEOUT)

    def _create_socket(self, timeout):
        import socket

        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))


def fail2ban_regex(log: Path, filter_dir: Path, out: str, logtype=None):
    """Lines fail2ban-regex prints with --out (ip, msg, ...). logtype:
    "journal" for the lines fail2ban's systemd backend builds from journal
    entries ("HOST IDENT[PID]: MESSAGE", the time taken from the entry)."""
    tool = need_tool("fail2ban-regex", "fail2ban")
    if logtype is None:
        cmd = [tool, "--out", out, log, filter_dir / "pillar.conf"]
    else:
        cmd = [tool, "-c", filter_dir.parent, "--out", out, log, f"pillar[logtype={logtype}]"]
    r = run(cmd, timeout=120)
    assert r.returncode == 0, f"fail2ban-regex failed:\n{r.out}\n{r.err}"
    return [l for l in r.out.splitlines() if l.strip()]


@pytest.fixture
def filter_dir(tmp):
    """The filter next to fail2ban's common.conf, which it includes."""
    need_tool("fail2ban-regex", "fail2ban")
    common = Path("/etc/fail2ban/filter.d/common.conf")
    if not common.exists():
        pytest.skip("fail2ban is installed but /etc/fail2ban/filter.d/common.conf is missing")
    d = tmp / "filter.d"
    d.mkdir()
    shutil.copy(common, d / "common.conf")
    shutil.copy(FILTER, d / "pillar.conf")
    return d


def test_fail2ban_filter_matches_exactly_the_failed_logins(make_pillar, filter_dir, tmp):
    p = make_pillar(smtp=True)
    p.add_user(USER, PASSWORD)

    # POP3: a wrong password, and an unknown user.
    c = SourcePOP3("127.0.0.1", p.port, "127.0.0.2")
    c.user(USER)
    with pytest.raises(poplib.error_proto):
        c.pass_("wrong-password")
    c.quit()
    c = SourcePOP3("127.0.0.1", p.port, "127.0.0.3")
    c.user("nobody@example.test")
    with pytest.raises(poplib.error_proto):
        c.pass_("whatever")
    c.quit()
    # POP3: a good login.
    c = SourcePOP3("127.0.0.1", p.port, "127.0.0.4")
    c.user(USER)
    c.pass_(PASSWORD)
    c.quit()
    # SMTP AUTH PLAIN: a wrong password, then a good login.
    s = smtplib.SMTP("127.0.0.1", p.smtp_port, local_hostname="client.example.org",
                     timeout=IO_TIMEOUT, source_address=("127.0.0.5", 0))
    s.ehlo()
    with pytest.raises(smtplib.SMTPAuthenticationError):
        s.auth("PLAIN", lambda challenge=None: f"\0{USER}\0not-the-password")
    s.quit()
    s = smtplib.SMTP("127.0.0.1", p.smtp_port, local_hostname="client.example.org",
                     timeout=IO_TIMEOUT, source_address=("127.0.0.6", 0))
    s.ehlo()
    s.auth("PLAIN", lambda challenge=None: f"\0{USER}\0{PASSWORD}")
    s.quit()
    rc = p.stop()
    assert rc == 0

    log = p.log().splitlines()
    failed = [l for l in log if " auth failed " in l]
    assert len(failed) == 3, "\n".join(log)
    good = [l for l in log if "event=login " in l or "event=auth " in l]
    assert any("rip=127.0.0.4" in l for l in good) and any("rip=127.0.0.6" in l for l in good), \
        "\n".join(log)

    expected_ips = ["127.0.0.2", "127.0.0.3", "127.0.0.5"]
    # 1. The log exactly as `pillar serve --foreground` wrote it.
    stderr_log = tmp / "stderr.log"
    stderr_log.write_text("\n".join(log) + "\n")
    assert fail2ban_regex(stderr_log, filter_dir, "msg") == failed
    assert fail2ban_regex(stderr_log, filter_dir, "ip") == expected_ips

    # The same events as syslog(3) sends them without --foreground (the
    # message without Pillar's own time and level, under the ident
    # "pillar"), in a traditional syslog file, and as the journal shows
    # the foreground lines of the systemd unit.
    stamp = re.compile(r"^(\S+) (debug|info|warn|error) (.*)$")
    syslog_lines, journalctl_lines, journal_entries = [], [], []
    for line in log:
        m = stamp.match(line)
        assert m, f"log line without time and level: {line!r}"
        syslog_lines.append(f"Jan  5 10:15:02 mail pillar[4242]: {m.group(3)}")
        journalctl_lines.append(f"2025-01-05T10:15:02+0000 mail pillar[4242]: {line}")
        journal_entries.append(f"mail pillar[4242]: {line}")
    for name, lines in (("syslog.log", syslog_lines), ("journalctl.log", journalctl_lines)):
        f = tmp / name
        f.write_text("\n".join(lines) + "\n")
        assert fail2ban_regex(f, filter_dir, "ip") == expected_ips, name
    # What the jail's `backend = systemd` matches: entries of the unit's
    # journal, Pillar's own time stamp still in the message.
    f = tmp / "journal-entries.log"
    f.write_text("\n".join(journal_entries) + "\n")
    assert fail2ban_regex(f, filter_dir, "ip", logtype="journal") == expected_ips

    # Other daemons' lines and forged fields do not match.
    forged = tmp / "forged.log"
    forged.write_text(
        "Jan  5 10:15:02 mail otherd[1]: sid=abc auth failed user=x rip=192.0.2.1\n"
        "Jan  5 10:15:02 mail pillar[1]: sid=abc event=login user=rip=192.0.2.2 rip=127.0.0.1\n"
        "Jan  5 10:15:02 mail pillar[1]: sid=abc auth failed user=x rip=192.0.2.3 tls=no\n")
    assert fail2ban_regex(forged, filter_dir, "ip") == []


def test_fail2ban_jail_names_the_filter_and_ports():
    text = JAIL.read_text()
    assert re.search(r"^\[pillar\]$", text, re.M)
    assert re.search(r"^filter\s*=\s*pillar\s*$", text, re.M)
    ports = re.search(r"^port\s*=\s*(\S+)", text, re.M).group(1).split(",")
    assert {"pop3", "pop3s", "smtp"} <= set(ports)
    # The journal name the filter matches is the one the unit logs under.
    ident = re.search(r"^SyslogIdentifier=(\S+)", UNIT.read_text(), re.M).group(1)
    assert f"SYSLOG_IDENTIFIER={ident}" in FILTER.read_text()


# --------------------------------------------------------------------------
# systemd


def test_systemd_unit_verifies(tmp):
    analyze = need_tool("systemd-analyze", "systemd")
    dest = tmp / "dest"
    make_install(dest, "/usr")
    # The unit as installed, its binary path pointed at the installed copy
    # (systemd-analyze checks that every Exec*= program exists).
    unit = (dest / "usr/lib/systemd/system/pillar.service").read_text()
    unit = unit.replace("/usr/sbin/pillar", str(dest / "usr/sbin/pillar"))
    udir = tmp / "unit"
    udir.mkdir()
    (udir / "pillar.service").write_text(unit)
    # Documentation=man:... is checked with man(1): let it find our pages.
    env = dict(os.environ, MANPATH=str(dest / "usr/share/man"), SYSTEMD_LOG_LEVEL="notice")
    r = run([analyze, "verify", udir / "pillar.service"], env=env, cwd=udir)
    if r.returncode != 0 and re.search(r"Failed to (?:connect|initialize|setup)|not been booted|"
                                       r"Failed to create .*manager", r.err):
        pytest.skip(f"systemd-analyze verify cannot run here: {r.err.strip()[:300]}")
    assert r.returncode == 0, f"systemd-analyze verify:\n{r.out}\n{r.err}"
    assert r.err.strip() == "", f"systemd-analyze verify warnings:\n{r.err}"


def test_systemd_unit_runs_the_server_the_documented_way():
    unit = UNIT.read_text()

    def value(key):
        return re.findall(rf"^{key}=(.*)$", unit, re.M)

    assert value("Type") == ["simple"]
    assert value("ExecStart") == ["/usr/sbin/pillar serve --foreground -c /etc/pillar/pillar.conf"]
    assert value("ExecReload") == ["/usr/sbin/pillar reload -c /etc/pillar/pillar.conf"]
    # The hardening the issue asks for.
    for key, want in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                      ("PrivateTmp", "yes"), ("ProtectHome", "yes"),
                      ("PrivateDevices", "yes")):
        assert value(key) == [want], key
    assert "/var/lib/pillar" in " ".join(value("ReadWritePaths"))
    caps = set(value("CapabilityBoundingSet")[0].split())
    # Bind low ports, become run_as, reach state_dir as root, give state_dir
    # and the secrets' directory to their owners when an older layout is
    # migrated, lock the login workers in <state_dir>/empty.
    assert caps == {"CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_DAC_OVERRIDE",
                    "CAP_CHOWN", "CAP_FOWNER", "CAP_SYS_CHROOT"}
    assert set(value("RestrictAddressFamilies")[0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
