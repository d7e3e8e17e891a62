"""PostgreSQL and Redis for the Synapse-with-workers test, each started
by the test on loopback in a directory of its own, and stopped by it.

Debian's `postgresql` and `redis-server` packages provide the binaries
(`scripts/setup.sh` installs them). Nothing here touches a system cluster or
service: a fresh cluster (initdb) in a temporary directory, a Redis server
that keeps nothing on disk.
"""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import psycopg2

SETUP_HINT = "run `bash scripts/setup.sh` (as root: it apt-get installs postgresql and redis-server)"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


class ServiceError(RuntimeError):
    """A service is missing or did not start; the message says which and why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child before exec, after any setuid
    os.setsid()
    try:  # PR_SET_PDEATHSIG: the service gets SIGKILL if the test process dies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def postgres_bin_dir() -> Path:
    """The newest Debian PostgreSQL server's bin directory."""
    candidates = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        version = Path(d).parent.name
        if os.access(Path(d) / "initdb", os.X_OK) and os.access(Path(d) / "postgres", os.X_OK):
            candidates.append((int(version) if version.isdigit() else 0, Path(d)))
    if not candidates:
        raise ServiceError(
            "PostgreSQL's server binaries are missing (no /usr/lib/postgresql/*/bin/initdb): "
            + SETUP_HINT)
    return max(candidates)[1]


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise ServiceError("redis-server is missing (not on PATH): " + SETUP_HINT)
    return path


class _Service:
    """One server process in its own process group, logging to a file."""

    name = "service"

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.log_path = workdir / f"{self.name}.log"
        self.proc: Optional[subprocess.Popen] = None

    def _spawn(self, argv: List[str], run_as: Optional[pwd.struct_passwd]) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                **_as_user(run_as))

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-n:]
        except FileNotFoundError:
            lines = []
        return f"--- {self.name} log (tail) ---\n" + "\n".join(lines)

    def _check_alive(self, doing: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServiceError(f"{self.name} exited with {self.proc.returncode} while {doing}\n"
                               + self.log_tail())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=STOP_TIMEOUT_S)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=STOP_TIMEOUT_S)


def _as_user(user: Optional[pwd.struct_passwd]) -> dict:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


class Postgres(_Service):
    """A throwaway PostgreSQL cluster: initdb into `workdir/data`, a server
    on 127.0.0.1:`port` (and a Unix socket in `workdir`), trust
    authentication for the superuser `user`.

    initdb and postgres refuse to run as root: as root they run as the
    `postgres` user the Debian package creates, and `workdir` is theirs."""

    name = "postgres"
    user = "synapse"

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.bin = postgres_bin_dir()
        self.port = free_port()
        self.run_as: Optional[pwd.struct_passwd] = None
        if os.geteuid() == 0:
            try:
                self.run_as = pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceError("running as root, and there is no `postgres` user to run "
                                   "PostgreSQL as: " + SETUP_HINT) from None
            os.chown(workdir, self.run_as.pw_uid, self.run_as.pw_gid)

    def start(self) -> None:
        data = self.workdir / "data"
        initdb = subprocess.run(
            [str(self.bin / "initdb"), "-D", str(data), "-U", self.user, "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
            cwd=self.workdir, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=START_TIMEOUT_S, **_as_user(self.run_as))
        if initdb.returncode != 0:
            raise ServiceError(f"initdb failed ({initdb.returncode}):\n"
                               + initdb.stdout + initdb.stderr)
        # Durability is not what this cluster is for: it is thrown away
        # after the test, and fsyncs would only slow Synapse's schema setup.
        self._spawn([
            str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.workdir}",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ], self.run_as)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            self._check_alive("starting")
            try:
                psycopg2.connect(**self.connect_args("postgres")).close()
                return
            except psycopg2.OperationalError as e:
                if time.monotonic() > deadline:
                    raise ServiceError(f"PostgreSQL did not accept connections on port "
                                       f"{self.port} within {START_TIMEOUT_S}s: {e}\n"
                                       + self.log_tail()) from None
            time.sleep(0.1)

    def connect_args(self, database: str) -> dict:
        return {"host": "127.0.0.1", "port": self.port, "user": self.user,
                "dbname": database, "connect_timeout": 5}

    def create_database(self, name: str) -> None:
        """A database as Synapse requires it (C collation, UTF-8)."""
        conn = psycopg2.connect(**self.connect_args("postgres"))
        try:
            conn.autocommit = True  # CREATE DATABASE can't run in a transaction
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' '
                            "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        finally:
            conn.close()

    def stop(self, sig: int = signal.SIGINT) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: it doesn't wait for
        # clients to disconnect.
        super().stop(sig)


class Redis(_Service):
    """A Redis server on 127.0.0.1:`port` that keeps nothing on disk."""

    name = "redis"

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.binary = redis_server_binary()
        self.port = free_port()

    def start(self) -> None:
        self._spawn([self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                     "--daemonize", "no"], None)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            self._check_alive("starting")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServiceError(f"Redis did not answer PING on port {self.port} within "
                                   f"{START_TIMEOUT_S}s\n" + self.log_tail())
            time.sleep(0.1)


def service_dir(prefix: str) -> Path:
    """A fresh directory under the system's temporary directory (not under
    another test directory: PostgreSQL, running as its own user, must be
    able to reach it)."""
    return Path(tempfile.mkdtemp(prefix=prefix))
