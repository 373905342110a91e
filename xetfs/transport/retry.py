"""Retry by classification with a pure backoff schedule (docs/protocol.md, "Status codes").

Which errors are retried is decided by the error, not here: ``XetError.retryable`` is True only for
``TransientError`` (connection errors, timeouts, 408, 429, 5xx except 501 — see ``xetfs.protocol.status``).
400/403/404/416 are final. A 401 is handled by the caller that owns the token (refresh once), not here.

The schedule is a pure function of the attempt number, the policy and a jitter value in ``[0, 1)`` passed
in by the caller, so tests can pin it exactly:

    delay(n) = min(max_delay_s, base_delay_s * 2 ** (n - 1)) * (0.5 + 0.5 * jitter)     (n = failures so far)
    delay(n) = max(delay(n), Retry-After)                                                when the server sent one

``retry_call`` runs an attempt function under that schedule with trio's clock (so ``trio.testing.MockClock``
drives it in tests) and bounds the total: it stops after ``max_attempts`` attempts, or when the next wait
would end past ``max_total_s`` since the first attempt, and it cancels an attempt still running at that
deadline (``TransientError``). Each attempt's own network waits are bounded by the httpx timeouts.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import trio

from xetfs.errors import TransientError, XetError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 15.0
    max_total_s: float = 300.0    # whole operation, attempts and waits included

    @classmethod
    def none(cls) -> "RetryPolicy":
        """One attempt (best-effort calls such as global dedup queries)."""
        return cls(max_attempts=1)


DEFAULT_RETRY = RetryPolicy()


def backoff_delay(failures: int, policy: RetryPolicy, jitter: float,
                  retry_after_s: float | None = None) -> float:
    """Seconds to wait after the ``failures``-th failed attempt (1-based). ``jitter`` is in [0, 1)."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    exp = min(policy.max_delay_s, policy.base_delay_s * 2.0 ** (failures - 1))
    delay = exp * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))
    if retry_after_s is not None and retry_after_s > delay:
        delay = retry_after_s
    return delay


def schedule(policy: RetryPolicy, jitters: Sequence[float]) -> list[float]:
    """The waits between attempts when every attempt fails, ignoring the total-time bound."""
    return [backoff_delay(n, policy, jitters[n - 1]) for n in range(1, policy.max_attempts)]


def retry_after_of(exc: BaseException) -> float | None:
    """The server's ``Retry-After`` hint carried by an error, if any."""
    return exc.retry_after_s if isinstance(exc, XetError) else None


async def retry_call(attempt: Callable[[], Awaitable[T]], policy: RetryPolicy = DEFAULT_RETRY, *,
                     what: str = "request", jitter: Callable[[], float] = random.random,
                     on_retry: Callable[[], None] | None = None) -> T:
    """Run ``attempt`` until it succeeds, raises a final error, or the policy's bounds are reached.
    ``on_retry`` is called once per repeated attempt (the clients count them: ``Failover.retried``)."""
    start = trio.current_time()
    deadline = start + policy.max_total_s
    failures = 0
    while True:
        try:
            with trio.fail_after(max(0.0, deadline - trio.current_time())):
                return await attempt()
        except trio.TooSlowError:
            raise TransientError(f"{what}: gave up after {policy.max_total_s:g} s") from None
        except XetError as exc:
            failures += 1
            if not exc.retryable or failures >= policy.max_attempts:
                raise
            delay = backoff_delay(failures, policy, jitter(), retry_after_of(exc))
            if trio.current_time() + delay > deadline:
                raise
            log.info("%s failed (%s); retry %d in %.2f s", what, exc, failures, delay)
            if on_retry is not None:
                on_retry()
            await trio.sleep(delay)
