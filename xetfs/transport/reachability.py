"""Is the server reachable? One state per mount, fed by every request attempt (docs/architecture.md,
"Offline mode").

States: ``online``; ``offline`` (the mount started without the server, from a revision snapshot); ``degraded``
(the server went away while mounted). ``Reachability`` is armed by the mount on its HTTP client's ``Failover``
(``xetfs.transport.endpoints``); other commands leave it unset and nothing of this runs.

What counts (``unreachable``): a connection-level failure -- refused or reset connection, timeout (``http_status``
0, set by ``xetfs.transport.http``), a retry schedule that gave up on time (no status) -- or a 5xx answer. Any
other answer, 4xx included, is a live server talking: it resets the count. ``failures_to_degrade`` such
failures in a row (request attempts, not whole retried calls: so the switch comes after about a second of
retries, not after every read's full timeout) switch ``online`` to ``degraded``; any successful attempt
(a probe, an upload, anything) switches back to ``online``. ``check()`` raises ``ServerOffline`` (EIO, not
retried) when not online: the read path calls it before going to the network, so an uncached read fails at once.

Listeners (``on_change``) are told ``(old, new)`` on every switch, synchronously (no await between the
attempt and the switch); ``wait_woken`` lets a task (the mount's reconnect probe) sleep until one, or until
someone who was refused asks for a probe (``poke``).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from xetfs.errors import TransientError, XetError

ONLINE, OFFLINE, DEGRADED = "online", "offline", "degraded"
STATES = (ONLINE, OFFLINE, DEGRADED)


class ServerOffline(XetError):
    """The mount is offline or degraded: this needs the server, which did not answer (EIO, not retried)."""


def unreachable(exc: BaseException) -> bool:
    """Is ``exc`` the server failing to answer (see the module docstring), rather than an answer?"""
    if isinstance(exc, ServerOffline):
        return True
    if not isinstance(exc, TransientError):
        return False
    status = exc.http_status
    return status is None or status == 0 or status >= 500


@dataclass(frozen=True, slots=True)
class LinkStats:
    """The ``link`` section of ``xetfs stats``."""

    state: str                    # online | offline | degraded
    since_unix_s: float           # when it entered that state
    failures_in_row: int          # connection-level failures since the last answer
    degraded_switches: int        # times a running mount lost the server
    reconnects: int               # times it came back (from offline or degraded)
    probes: int                   # reconnect probes sent
    last_error: str | None        # the last connection-level failure


class Reachability:
    """The state machine of the module docstring. Pure apart from the wall clock of ``since`` and a trio Event."""

    def __init__(self, state: str = ONLINE, *, failures_to_degrade: int = 3,
                 now: Callable[[], float] = time.time) -> None:
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, not {state!r}")
        self.state = state
        self.failures_to_degrade = max(1, failures_to_degrade)
        self._now = now
        self.since_unix_s = now()
        self.failures_in_row = 0
        self.degraded_switches = 0
        self.reconnects = 0
        self.probes = 0
        self.last_error: str | None = None
        self._listeners: list[Callable[[str, str], None]] = []
        self._wake = trio.Event()

    @property
    def online(self) -> bool:
        return self.state == ONLINE

    def on_change(self, listener: Callable[[str, str], None]) -> None:
        self._listeners.append(listener)

    def check(self, what: str = "this read") -> None:
        """Raise ``ServerOffline`` unless online."""
        if self.state != ONLINE:
            raise ServerOffline(f"{what} needs the server, which is unreachable (mount is {self.state}; "
                                f"cached files are still served)")

    def observe(self, exc: BaseException | None) -> None:
        """The outcome of one request attempt: None for an answer that came back fine."""
        if exc is not None and unreachable(exc):
            self.failures_in_row += 1
            self.last_error = str(exc)
            if self.state == ONLINE and self.failures_in_row >= self.failures_to_degrade:
                self.degraded_switches += 1
                self._switch(DEGRADED)
            return
        self.failures_in_row = 0
        if self.state != ONLINE:
            self.reconnects += 1
            self._switch(ONLINE)

    def _switch(self, new: str) -> None:
        old, self.state = self.state, new
        self.since_unix_s = self._now()
        self.poke()
        for listener in list(self._listeners):
            listener(old, new)

    def poke(self) -> None:
        """Wake ``wait_woken`` (a switch does too)."""
        wake, self._wake = self._wake, trio.Event()
        wake.set()

    async def wait_woken(self) -> None:
        """Return at the next switch or ``poke``."""
        await self._wake.wait()

    def snapshot(self) -> LinkStats:
        return LinkStats(self.state, self.since_unix_s, self.failures_in_row, self.degraded_switches,
                         self.reconnects, self.probes, self.last_error)
