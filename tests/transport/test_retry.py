"""The pure backoff schedule and the retry loop, on trio's MockClock (virtual time, never wall time)."""
from __future__ import annotations

import pytest
import trio
import trio.testing

from xetfs.transport.retry import RetryPolicy, backoff_delay, retry_call, schedule
from xetfs.errors import Forbidden, NotFound, RangeNotSatisfiable, TransientError, ValidationError, XetError

POLICY = RetryPolicy(max_attempts=5, base_delay_s=1.0, max_delay_s=5.0, max_total_s=100.0)


def test_schedule_is_exponential_capped_and_jittered() -> None:
    assert schedule(POLICY, [1.0] * 4) == [1.0, 2.0, 4.0, 5.0]
    assert schedule(POLICY, [0.0] * 4) == [0.5, 1.0, 2.0, 2.5]
    assert backoff_delay(3, POLICY, 0.5) == pytest.approx(3.0)


def test_retry_after_wins_when_longer() -> None:
    assert backoff_delay(1, POLICY, 1.0, retry_after_s=30.0) == 30.0
    assert backoff_delay(3, POLICY, 1.0, retry_after_s=0.1) == 4.0


class Flaky:
    """Fails with the given errors in turn, then returns "ok"; records the (virtual) time of each attempt."""

    def __init__(self, *errors: XetError) -> None:
        self.errors = list(errors)
        self.times: list[float] = []

    async def __call__(self) -> str:
        self.times.append(trio.current_time())
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def run_mock(fn):  # type: ignore[no-untyped-def]
    return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in zip(times, times[1:])]


def test_transient_errors_are_retried_on_the_schedule() -> None:
    flaky = Flaky(TransientError("503"), TransientError("reset"), TransientError("429"))

    async def main() -> str:
        return await retry_call(flaky, POLICY, jitter=lambda: 1.0)

    assert run_mock(main) == "ok"
    assert gaps(flaky.times) == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("error", [ValidationError("400"), Forbidden("403"), NotFound("404"),
                                   RangeNotSatisfiable("416")])
def test_final_errors_are_not_retried(error: XetError) -> None:
    flaky = Flaky(error)

    async def main() -> None:
        with pytest.raises(type(error)):
            await retry_call(flaky, POLICY, jitter=lambda: 1.0)

    run_mock(main)
    assert len(flaky.times) == 1


def test_gives_up_after_max_attempts() -> None:
    flaky = Flaky(*[TransientError(str(i)) for i in range(10)])

    async def main() -> None:
        with pytest.raises(TransientError, match="4"):
            await retry_call(flaky, POLICY, jitter=lambda: 1.0)

    run_mock(main)
    assert len(flaky.times) == POLICY.max_attempts


def test_retry_after_is_honoured() -> None:
    busy = TransientError("429", retry_after_s=42.0)
    flaky = Flaky(busy)

    async def main() -> None:
        await retry_call(flaky, POLICY, jitter=lambda: 1.0)

    run_mock(main)
    assert gaps(flaky.times) == [42.0]


def test_total_time_is_bounded() -> None:
    policy = RetryPolicy(max_attempts=100, base_delay_s=1.0, max_delay_s=5.0, max_total_s=20.0)
    flaky = Flaky(*[TransientError(str(i)) for i in range(100)])

    async def main() -> float:
        start = trio.current_time()
        with pytest.raises(TransientError):
            await retry_call(flaky, policy, jitter=lambda: 1.0)
        return trio.current_time() - start

    assert run_mock(main) <= 20.0
    assert 3 < len(flaky.times) < 100


def test_a_hanging_attempt_is_cut_at_the_deadline() -> None:
    policy = RetryPolicy(max_attempts=3, max_total_s=30.0)

    async def hang() -> None:
        await trio.sleep_forever()

    async def main() -> float:
        start = trio.current_time()
        with pytest.raises(TransientError, match="gave up"):
            await retry_call(hang, policy)
        return trio.current_time() - start

    assert run_mock(main) == pytest.approx(30.0)


def test_each_repeated_attempt_is_reported_once() -> None:
    flaky = Flaky(TransientError("503"), TransientError("reset"))
    retried: list[int] = []

    async def main() -> str:
        return await retry_call(flaky, POLICY, jitter=lambda: 1.0, on_retry=lambda: retried.append(len(flaky.times)))

    assert run_mock(main) == "ok"
    assert retried == [1, 2], "after the first and the second failed attempt"
    final = Flaky(NotFound("404"))
    retried.clear()

    async def once() -> None:
        with pytest.raises(NotFound):
            await retry_call(final, POLICY, on_retry=lambda: retried.append(1))

    run_mock(once)
    assert retried == []
