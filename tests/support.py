"""Helpers the tests share."""

from __future__ import annotations

import time
from typing import Callable


def eventually(check: Callable[[], object], timeout: float = 30, interval: float = 0.2):
    """The first truthy result of `check` within `timeout`, else AssertionError with the last result."""
    deadline = time.monotonic() + timeout
    result = None
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last result: {result!r})")
