"""Throwaway PostgreSQL and Redis servers for tests: real binaries on loopback, one per xdist worker.

API (small on purpose):
- ``start_postgres(base) -> PostgresServer`` and ``start_redis(base) -> RedisServer``: each has ``.url`` and
  ``.stop()`` and is a context manager. Both raise :class:`ServerUnavailable` (with the reason) when the binary
  is missing or the server does not come up within 20 s.
- ``create_database(url) -> str``: a fresh, empty database on that server; returns its URL.
- pytest fixtures ``postgres_url`` and ``redis_url`` (session scope): import them into a test module or
  conftest.py; they skip the test with the reason when the server cannot be started.

PostgreSQL: ``initdb`` with a random password (scram-sha-256), fsync off for speed, listening on a free
127.0.0.1 port with its Unix socket in the data folder. As root, initdb/pg_ctl run as the ``postgres`` OS user
through ``runuser`` and the cluster lives in a fresh folder under the system temp dir (pytest's tmp folders
are private to root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

__all__ = [
    "PostgresServer",
    "RedisServer",
    "ServerUnavailable",
    "create_database",
    "postgres_url",
    "redis_url",
    "start_postgres",
    "start_redis",
]

READY_TIMEOUT_S = 20.0


class ServerUnavailable(RuntimeError):
    """A test server could not be started; the message says why (used as the pytest skip reason)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bindir() -> Path | None:
    found = shutil.which("pg_config")
    if found:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([found, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            bindir = Path(out.stdout.strip())
            if (bindir / "initdb").is_file():
                return bindir
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class _Server:
    url: str

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class PostgresServer(_Server):
    """A running throwaway cluster; ``url`` connects as its superuser to database ``postgres``."""

    def __init__(self, bindir: Path, root: Path, *, owned_tmp: bool) -> None:
        self._bindir = bindir
        self._root = root
        self._owned_tmp = owned_tmp
        self._data = root / "data"
        self._as_postgres = os.geteuid() == 0
        self.user = "modelward"
        self.password = secrets.token_hex(12)
        self.port = 0
        self.url = ""

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        cmd = [str(self._bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self._root, check=False)

    def start(self) -> PostgresServer:
        pwfile = self._root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            shutil.chown(self._root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        init = self._run(
            "initdb", "-D", str(self._data), "-U", self.user, f"--pwfile={pwfile}", "--auth=scram-sha-256",
            "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        if init.returncode != 0:
            raise ServerUnavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
        last = ""
        for _attempt in range(3):  # another worker may grab the port between free_port() and bind
            self.port = free_port()
            options = (
                f"-p {self.port} -k {self._socket_dir()} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off -c shared_buffers=16MB -c max_connections=60"
            )
            started = self._run(
                "pg_ctl", "-D", str(self._data), "-l", str(self._root / "server.log"), "-w",
                "-t", str(int(READY_TIMEOUT_S)), "-o", options, "start",
            )  # fmt: skip
            if started.returncode == 0:
                self.url = f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/postgres"
                return self
            log = self._root / "server.log"
            last = (started.stderr + (log.read_text(errors="replace") if log.exists() else ""))[-800:]
        self.stop()
        raise ServerUnavailable(f"PostgreSQL did not start: {last.strip()}")

    def _socket_dir(self) -> str:
        # Unix socket paths are limited to ~107 bytes; a deep tmp folder falls back to TCP only.
        return str(self._root) if len(str(self._root)) < 80 else "''"

    def stop(self) -> None:
        if (self._data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "-w", "stop")
        if self._owned_tmp:
            shutil.rmtree(self._root, ignore_errors=True)


def start_postgres(base: Path) -> PostgresServer:
    """Initialise and start a throwaway PostgreSQL cluster under ``base`` (under the system temp dir as root)."""
    bindir = _pg_bindir()
    if bindir is None:
        raise ServerUnavailable("PostgreSQL is not installed (no pg_config, initdb or /usr/lib/postgresql/*/bin)")
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            raise ServerUnavailable("running as root and runuser is missing: cannot run PostgreSQL as postgres")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise ServerUnavailable("running as root and there is no 'postgres' OS user to run PostgreSQL") from None
        root, owned = Path(tempfile.mkdtemp(prefix="mw-pg-")), True
    else:
        root, owned = Path(tempfile.mkdtemp(prefix="pg-", dir=base)), False
    return PostgresServer(bindir, root, owned_tmp=owned).start()


def create_database(url: str) -> str:
    """Create a new empty database on the server of ``url`` (a superuser URL) and return its URL."""
    import psycopg

    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # name is generated here, never user input
    return url.rsplit("/", 1)[0] + "/" + name


class RedisServer(_Server):
    """A running redis-server without persistence; ``url`` is ``redis://127.0.0.1:<port>/0``."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self._binary = binary
        self._workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.url = ""

    def start(self) -> RedisServer:
        last = ""
        for _attempt in range(3):
            self.port = free_port()
            self._proc = subprocess.Popen(
                [
                    self._binary, "--port", str(self.port), "--save", "", "--appendonly", "no",
                    "--bind", "127.0.0.1", "--dir", str(self._workdir),
                ],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self._workdir,
            )  # fmt: skip
            deadline = time.monotonic() + READY_TIMEOUT_S
            while time.monotonic() < deadline and self._proc.poll() is None:
                if _redis_ping(self.port):
                    self.url = f"redis://127.0.0.1:{self.port}/0"
                    return self
                time.sleep(0.05)
            self.stop()
            last = f"exit code {self._proc.returncode}"
        raise ServerUnavailable(f"redis-server did not answer PING within {READY_TIMEOUT_S:.0f} s ({last})")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(base: Path) -> RedisServer:
    """Start a redis-server on a free loopback port, working directory under ``base``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerUnavailable("redis-server is not installed (apt-get install redis-server, or `make services`)")
    workdir = Path(tempfile.mkdtemp(prefix="redis-", dir=base))
    return RedisServer(binary, workdir).start()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a throwaway PostgreSQL superuser (one cluster per test process); skips when unavailable."""
    try:
        server = start_postgres(tmp_path_factory.mktemp("postgres"))
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    with server:
        yield server.url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a throwaway redis-server (one per test process); skips when unavailable."""
    try:
        server = start_redis(tmp_path_factory.mktemp("redis"))
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    with server:
        yield server.url
