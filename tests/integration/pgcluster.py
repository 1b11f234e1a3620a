"""A PostgreSQL cluster of the tests' own, for the PostgreSQL directory:
initdb in a temporary directory, trust authentication for the role
`pillar`, listening on a free loopback port with its socket in its own
directory. Needs Debian's `postgresql` (the server programs); as root the
cluster runs as the `postgres` account, since initdb refuses root.

Used by test_postgresql.py (a cluster per module) and by the harness when
PILLAR_TEST_DIRECTORY=postgresql (one cluster for the whole run, every
instance with a database of its own)."""

import atexit
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness import free_port, is_root


def pg_bindir():
    """The newest installed server's bin directory, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Cluster:
    def __init__(self):
        self.bindir = pg_bindir()
        assert self.bindir, "PostgreSQL server programs not installed (Debian package postgresql)"
        self.dir = Path(tempfile.mkdtemp(prefix="pillar-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.log = self.dir / "postgresql.log"
        self.ndb = 0
        self.as_user = "postgres" if is_root() else None
        if self.as_user:
            shutil.chown(self.dir, self.as_user)
        self.run_pg("initdb", "-D", self.data, "-U", "pillar", "--auth=trust", "-E", "UTF8",
                    "--no-sync")
        self.start()

    def run_pg(self, prog, *args, check=True, timeout=120):
        cmd = [str(self.bindir / prog), *[str(a) for a in args]]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout,
                           cwd=self.dir)
        if check:
            assert r.returncode == 0, f"{prog} failed: {r.stdout.decode()} {r.stderr.decode()}"
        return r

    def pg_ctl(self, action, *extra):
        # fsync off: the tests never survive a crash of the machine.
        opts = (f"-k {self.dir} -c listen_addresses=127.0.0.1 -p {self.port} -c fsync=off"
                " -c max_connections=300")
        self.run_pg("pg_ctl", "-D", self.data, "-l", self.log, "-o", opts, "-w", "-t", "60",
                    *extra, action)

    def start(self):
        self.pg_ctl("start")

    def stop(self):
        self.pg_ctl("stop", "-m", "fast")

    def restart(self):
        self.pg_ctl("restart", "-m", "fast")

    def url(self, db):
        return f"postgresql://pillar@127.0.0.1:{self.port}/{db}"

    def psql(self, db, sql):
        """Run SQL in database db; the rows as lists of strings."""
        r = subprocess.run(["psql", "-X", "-qAt", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                            self.url(db), "-c", sql],
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"psql failed: {r.stderr.decode()}"
        return [l.split("\t") for l in r.stdout.decode().splitlines()]

    def new_database(self):
        self.ndb += 1
        name = f"pillar_{self.ndb}"
        self.psql("postgres", f"CREATE DATABASE {name}")
        return name

    def new_url(self):
        return self.url(self.new_database())

    def destroy(self):
        try:
            self.stop()
        except AssertionError:
            pass
        if not os.environ.get("PILLAR_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)


_shared = None


def shared_cluster():
    """One cluster for the whole test run, made on first use and stopped
    when the run ends."""
    global _shared
    if _shared is None:
        _shared = Cluster()
        atexit.register(_shared.destroy)
    return _shared
