"""stripe-mock (Stripe's official API mock) built from source with `go install` and run as a child process.

Usage: python -m postsale_local.stripe_mock install
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .processes import CACHE_DIR, TOOLS_BIN, ComponentUnavailable, free_port, start_process, stop_process, wait_for_port

STRIPE_MOCK_MODULE = "github.com/stripe/stripe-mock"
STRIPE_MOCK_VERSION = "v0.203.0"  # newest tag on the Go module proxy; builds with Go 1.26
# The binary reports "master" for -version, so the installed tag is recorded beside it.
_BINARY = TOOLS_BIN / "stripe-mock"
_MARKER = TOOLS_BIN / "stripe-mock.version"


def _go() -> str | None:
    # /usr/local/go is where the official tarball goes; it is often missing from non-login PATHs.
    fallback = Path("/usr/local/go/bin/go")
    return shutil.which("go") or (str(fallback) if fallback.exists() else None)


def _installed_version() -> str | None:
    try:
        return _MARKER.read_text().strip() if _BINARY.exists() else None
    except OSError:
        return None


def ensure_stripe_mock() -> Path:
    """Path to stripe-mock at STRIPE_MOCK_VERSION in <repo>/.tools/bin, building it when missing or outdated."""
    if _installed_version() == STRIPE_MOCK_VERSION:
        return _BINARY
    go = _go()
    if go is None:
        raise ComponentUnavailable("stripe-mock is built with `go install`, but Go is not installed "
                                   "(https://go.dev/dl/ or apt-get install golang)")
    TOOLS_BIN.mkdir(parents=True, exist_ok=True)
    # Parallel test workers may all get here; one builds, the others wait and reuse it.
    with open(TOOLS_BIN / ".stripe-mock.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version() == STRIPE_MOCK_VERSION:
            return _BINARY
        _MARKER.unlink(missing_ok=True)
        result = subprocess.run([go, "install", f"{STRIPE_MOCK_MODULE}@{STRIPE_MOCK_VERSION}"],
                                env={**os.environ, "GOBIN": str(TOOLS_BIN)},
                                capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0 or not _BINARY.exists():
            raise ComponentUnavailable(
                f"`go install {STRIPE_MOCK_MODULE}@{STRIPE_MOCK_VERSION}` failed with {result.returncode}:\n"
                f"{(result.stdout + result.stderr)[-3000:]}")
        _MARKER.write_text(STRIPE_MOCK_VERSION + "\n")
    return _BINARY


class StripeMock:
    """stripe-mock serving HTTP on 127.0.0.1 at a free port (stateless: it answers from fixtures)."""

    def __init__(self, port: int | None = None):
        self._requested_port = port
        self.port: int | None = None
        self.log: Path | None = None
        self._process: subprocess.Popen | None = None

    @property
    def api_base(self) -> str:
        if self.port is None:
            raise RuntimeError("StripeMock is not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        if self._process is not None:
            return
        binary = ensure_stripe_mock()
        self.port = self._requested_port or free_port()
        self.log = CACHE_DIR / "logs" / f"stripe-mock-{self.port}.log"
        # -http-addr alone still opens HTTPS on [::]:12112 (stripe-mock only suppresses HTTPS for
        # -http/-http-port), which would clash between instances; park HTTPS on a kernel-chosen loopback port.
        self._process = start_process(
            [binary, "-http-addr", f"127.0.0.1:{self.port}", "-https-addr", "127.0.0.1:0"], self.log)
        try:
            wait_for_port(self.port, self._process, timeout=timeout, log=self.log)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)

    def __enter__(self) -> "StripeMock":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print("usage: python -m postsale_local.stripe_mock install", file=sys.stderr)
        return 2
    try:
        print(ensure_stripe_mock())
    except ComponentUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
