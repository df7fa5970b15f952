"""Debian's Chromium for the browser tests: a test tool's own browser download cannot work here.

    python -m postsale_local.browser install
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from postsale_local.processes import ComponentUnavailable

# Quiet: without these Chromium keeps calling home, which a closed network refuses (Playwright adds --headless).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def ensure_chromium() -> Path:
    """The path of Debian's chromium, installing the package (as root) when it is missing."""
    found = shutil.which("chromium")
    if found:
        return Path(found)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ComponentUnavailable("the browser tests need Debian's chromium: run `apt-get install chromium` as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise ComponentUnavailable(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    found = shutil.which("chromium")
    if not found:
        raise ComponentUnavailable("chromium was installed but is not on PATH")
    return Path(found)


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m postsale_local.browser install")
    print(ensure_chromium())
