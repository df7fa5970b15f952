"""PostgreSQL for tests and local runs: Debian's server as a child process, a container, or an external server.

All three offer the same shape: start(), create_database(name) -> SQLAlchemy URL, stop(), and
use as a context manager. `postgres_server()` picks one: POSTSALE_TEST_POSTGRES_URL if set,
else a container when a Docker engine answers, else a local cluster.

Usage: python -m postsale_local.postgres install
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from .processes import CACHE_DIR, ComponentUnavailable, docker_available, free_port, start_process, stop_process, tail

EXTERNAL_URL_ENV = "POSTSALE_TEST_POSTGRES_URL"
POSTGRES_LIB = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"  # Debian's system user; initdb and postgres refuse to run as root


def external_postgres_url() -> str | None:
    """The server URL from POSTSALE_TEST_POSTGRES_URL, or None when callers should start their own."""
    return os.environ.get(EXTERNAL_URL_ENV, "").strip() or None


def _installed_bin_dir() -> Path | None:
    candidates = [p.parent for p in POSTGRES_LIB.glob("*/bin/postgres") if (p.parent / "initdb").exists()]
    # Several major versions can be installed side by side; take the newest.
    candidates.sort(key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else -1)
    return candidates[-1] if candidates else None


def ensure_postgres_installed() -> Path:
    """Bin dir of Debian's PostgreSQL server (initdb, pg_ctl, postgres), installing it with apt when missing."""
    bin_dir = _installed_bin_dir()
    if bin_dir:
        return bin_dir
    if shutil.which("apt-get") is None:
        raise ComponentUnavailable("PostgreSQL server is not installed and apt-get is missing; "
                                   "install PostgreSQL or set POSTSALE_TEST_POSTGRES_URL")
    if os.geteuid() != 0:
        raise ComponentUnavailable("PostgreSQL server is not installed; run "
                                   "`sudo apt-get install -y --no-install-recommends postgresql` "
                                   "or set POSTSALE_TEST_POSTGRES_URL")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update"],
                 ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]):
        result = subprocess.run(args, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise ComponentUnavailable(f"`{' '.join(args)}` failed with {result.returncode}:\n"
                                       f"{(result.stdout + result.stderr)[-3000:]}")
    bin_dir = _installed_bin_dir()
    if bin_dir is None:
        raise ComponentUnavailable(f"apt-get installed postgresql but no server was found under {POSTGRES_LIB}")
    return bin_dir


def _server_user() -> str | None:
    """The user to run initdb/postgres as: ourselves, unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        # The Debian package creates this user; recreate it the same way if someone removed it.
        subprocess.run(["useradd", "--system", "--user-group", "--home-dir", "/var/lib/postgresql",
                        "--no-create-home", "--shell", "/bin/bash", SERVER_USER],
                       check=True, capture_output=True)
    return SERVER_USER


def _sqlalchemy_url(server_url: str, database: str) -> str:
    """server_url with its database replaced and the psycopg (v3) driver named."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(scheme="postgresql+psycopg", path="/" + quote(database, safe="")))


def create_database(server_url: str, name: str) -> str:
    """Create database `name` on the server unless it exists; return its SQLAlchemy URL."""
    try:
        import psycopg
        from psycopg import errors, sql
    except ImportError as exc:
        raise ComponentUnavailable("creating databases needs psycopg (pip install 'psycopg[binary]')") from exc
    # libpq does not understand SQLAlchemy's "+driver" suffix.
    libpq_url = urlunsplit(urlsplit(server_url)._replace(scheme="postgresql"))
    # CREATE DATABASE cannot run inside a transaction.
    with psycopg.connect(libpq_url, autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except errors.DuplicateDatabase:
                pass  # another caller created it between our check and create
    return _sqlalchemy_url(server_url, name)


class _Server:
    """Shared plumbing: create_database and the context manager."""

    server_url: str

    def start(self, timeout: float = 60) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def create_database(self, name: str) -> str:
        return create_database(self.server_url, name)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class PostgresCluster(_Server):
    """A throwaway PostgreSQL cluster run from Debian's binaries as our own child process.

    With no data_dir a temporary one is made and removed on stop(); a given data_dir is kept and
    reused on the next start (initdb only runs when it is empty).
    """

    def __init__(self, data_dir: Path | None = None, port: int | None = None, *, durable: bool = False):
        """`durable`: keep PostgreSQL's durability settings, for tests that crash the server (a
        commit answered must survive a kill); otherwise they are off, which is faster."""
        self.data_dir = Path(data_dir) if data_dir else None  # a temp dir is made on start()
        self.durable = durable
        self._temp_root: Path | None = None
        self._requested_port = port
        self.port: int | None = None
        self.log: Path | None = None
        self._process: subprocess.Popen | None = None

    @property
    def server_url(self) -> str:
        if self.port is None:
            raise RuntimeError("PostgresCluster is not started")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 60) -> None:
        if self._process is not None:
            return
        bin_dir = ensure_postgres_installed()
        user = _server_user()
        if self.data_dir is None:
            self._temp_root = Path(tempfile.mkdtemp(prefix="postsale-pg-"))
            self.data_dir = self._temp_root / "data"
        try:
            self._prepare_data_dir(bin_dir, user)
            # A restart (after kill) keeps the port, so the services' URLs stay right.
            self.port = self._requested_port or self.port or free_port()
            self.log = CACHE_DIR / "logs" / f"postgres-{self.port}.log"
            # Unix socket paths are limited to 107 bytes; skip the socket rather than fail on deep paths.
            socket_dir = str(self.data_dir) if len(str(self.data_dir)) < 90 else ""
            self._process = start_process(
                [bin_dir / "postgres", "-D", self.data_dir, "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1",
                 "-c", f"unix_socket_directories={socket_dir}",
                 # Test data: durability only costs time (with synchronous_commit off, a kill loses
                 # commits already answered; `durable` servers keep it).
                 *([] if self.durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                            "-c", "full_page_writes=off"])],
                self.log, cwd=self.data_dir, user=user)
            self._wait_ready(bin_dir, timeout)
        except BaseException:
            self.stop()  # also removes a temp data dir
            raise

    def _prepare_data_dir(self, bin_dir: Path, user: str | None) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user:
            for path in filter(None, (self._temp_root, self.data_dir)):
                shutil.chown(path, user, user)
        result = subprocess.run(
            [bin_dir / "initdb", "-D", self.data_dir, "--username=postgres", "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, cwd=self.data_dir, user=user, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise ComponentUnavailable(
                f"initdb failed for {self.data_dir} (it runs as {user or 'the current user'}, who must be able "
                f"to reach and own that directory):\n{(result.stdout + result.stderr)[-3000:]}")

    def _wait_ready(self, bin_dir: Path, timeout: float) -> None:
        # pg_isready rather than a port check: the port answers while the server still rejects logins.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ComponentUnavailable(f"postgres exited with {self._process.returncode}; "
                                           f"see {self.log}:\n{tail(self.log)}")
            ready = subprocess.run([bin_dir / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port),
                                    "-U", "postgres", "-d", "postgres"], stdin=subprocess.DEVNULL)
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise ComponentUnavailable(f"postgres did not accept connections within {timeout:.0f}s; "
                                   f"see {self.log}:\n{tail(self.log)}")

    def kill(self) -> None:
        """SIGKILL the server and every backend (its process group), as a crash would; the data
        directory stays, and `start()` brings the server back on the same port through crash
        recovery. For fault tests."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would wait for clients to leave.
            try:
                os.kill(process.pid, signal.SIGINT)
                process.wait(timeout=20)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                stop_process(process, timeout=5)
        if self._temp_root is not None:
            shutil.rmtree(self._temp_root, ignore_errors=True)
            self._temp_root = self.data_dir = None


class ExternalPostgres(_Server):
    """A server someone else runs (POSTSALE_TEST_POSTGRES_URL); start/stop do nothing."""

    def __init__(self, server_url: str):
        self.server_url = server_url

    def start(self, timeout: float = 60) -> None:
        pass

    def stop(self) -> None:
        pass


class ContainerPostgres(_Server):
    """PostgreSQL in a container via testcontainers, for machines with a Docker engine."""

    def __init__(self, image: str = "postgres:15-alpine"):
        self.image = image
        self._container = None

    @property
    def server_url(self) -> str:
        if self._container is None:
            raise RuntimeError("ContainerPostgres is not started")
        return self._container.get_connection_url(driver="psycopg")

    def start(self, timeout: float = 60) -> None:
        if self._container is not None:
            return
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers before the community/ split
            from testcontainers.postgres import PostgresContainer
        container = PostgresContainer(self.image, username="postgres", password="postgres", dbname="postgres")
        container.start()  # testcontainers waits until psql inside the container answers
        self._container = container

    def stop(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.stop()


def postgres_server(data_dir: Path | None = None) -> _Server:
    """External server if configured, else a container if Docker answers, else a local cluster."""
    url = external_postgres_url()
    if url:
        return ExternalPostgres(url)
    if docker_available():
        return ContainerPostgres()
    return PostgresCluster(data_dir)


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print("usage: python -m postsale_local.postgres install", file=sys.stderr)
        return 2
    try:
        print(ensure_postgres_installed())
    except ComponentUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
