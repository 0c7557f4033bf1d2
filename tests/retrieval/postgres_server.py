"""A real PostgreSQL server for the tests: Debian's binaries, a cluster in a temporary folder, a Unix socket."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """initdb + pg_ctl start on a socket in a fresh folder (as the postgres user when run as root)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it)")
        pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'spanqa[postgres]')")
        self.bin = Path(found[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="spanqa-pg-"))
        self.port = _free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o755)

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120)
        if done.returncode:
            self.stop()
            pytest.skip(f"PostgreSQL could not start here: {(done.stderr or done.stdout).strip()[-300:]}")

    def start(self) -> LocalPostgres:
        data = self.root / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "spanqa", "-E", "UTF8")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-w", "-l", str(self.root / "log"), "-o",
                  f"-k {self.root} -p {self.port} -c listen_addresses=''", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://spanqa@/{database}?host={self.root}&port={self.port}"

    def new_database(self) -> str:
        import psycopg

        name = f"t{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if (self.root / "data" / "postmaster.pid").exists():
            subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast",
                            "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)
