"""Start, watch and stop the child processes this project starts itself.

A process is always stopped by the id we recorded when starting it (and its own process
group), never by name, so nothing else on the machine is touched.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Sequence

REPO_ROOT = Path(__file__).resolve().parents[4]
CACHE_DIR = Path(os.environ.get("POSTSALE_CACHE_DIR", REPO_ROOT / ".cache"))
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"


class ComponentUnavailable(RuntimeError):
    """A real component could not be installed or started on this machine."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = 60.0,
                  host: str = "127.0.0.1", log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_answers(port, host):
            return
        if process is not None and process.poll() is not None:
            raise ComponentUnavailable(
                f"process {process.args!r} exited with {process.returncode} before port {port} answered"
                + (f"; see {log}:\n{tail(log)}" if log else "")
            )
        time.sleep(0.1)
    raise ComponentUnavailable(f"port {host}:{port} did not answer within {timeout:.0f}s"
                               + (f"; see {log}:\n{tail(log)}" if log else ""))


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_process(args: Sequence[str | os.PathLike], log: Path, env: dict[str, str] | None = None,
                  cwd: Path | None = None, user: str | None = None) -> subprocess.Popen:
    """Start a child in its own process group, output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out: IO[bytes] = open(log, "ab")
    try:
        return subprocess.Popen(
            [str(a) for a in args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
            user=user,
        )
    finally:
        out.close()


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


def docker_available() -> bool:
    """True when a Docker engine answers, so testcontainers can be used instead of local processes."""
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0
