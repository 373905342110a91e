"""Waiting on observable state (a counter, a file, a process), never on the clock alone."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(probe: Callable[[], T], what: str, timeout_s: float = 60.0, poll_s: float = 0.02) -> T:
    """Call ``probe`` until it returns something true and return that; fail naming ``what`` after ``timeout_s``
    (the bound only catches a hang: the test's outcome never depends on it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(poll_s)
