"""The mount's ``Gate`` and ``reconnect`` (``xetfs.fs.offline``): calls that need the server are refused at once
unless online, the ones waiting on it are cancelled (EIO) when the mount goes degraded, and the probe backs off
within bounds."""
from __future__ import annotations

import pytest
import trio
import trio.testing

from xetfs.errors import TransientError
from xetfs.fs.offline import Gate, ReconnectParams, reconnect
from xetfs.transport.reachability import OFFLINE, Reachability, ServerOffline


def refused() -> TransientError:
    return TransientError("cannot reach host", http_status=0, request_sent=False)


def test_the_gate_refuses_when_offline_and_cancels_waiting_calls_at_the_switch() -> None:
    trio.run(_gate_scenario)


async def _gate_scenario() -> None:
    r = Reachability(failures_to_degrade=1)
    gate = Gate(r)
    started = trio.Event()
    outcome: list[BaseException] = []

    async def waits_forever() -> None:
        started.set()
        await trio.sleep_forever()

    async def caller() -> None:
        try:
            await gate.run("a fetch", waits_forever)
        except ServerOffline as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller)
        await started.wait()
        r.observe(refused())                     # the switch cancels the waiting call
    assert len(outcome) == 1 and "became unreachable" in str(outcome[0])
    with pytest.raises(ServerOffline):
        await gate.run("a read", waits_forever)  # refused before it starts
    r.observe(None)

    async def answer() -> int:
        return 7

    assert await gate.run("a read", answer) == 7


def test_reconnect_probes_with_bounded_backoff_and_sooner_when_a_read_asks() -> None:
    """Virtual time: probes at 0, then waits of 0.5, 1, 2, 4 s doubling up to ``max_s``; a refused read (a poke)
    cuts the wait (never below ``first_s`` after the last probe); the first answer ends offline mode and the probing."""
    params = ReconnectParams(first_s=0.5, max_s=4.0, timeout_s=1.0)
    probes: list[float] = []

    async def main() -> None:
        r = Reachability(OFFLINE)
        answer_at = 20.0

        async def probe() -> None:
            probes.append(trio.current_time())
            if trio.current_time() >= answer_at:
                r.observe(None)                      # what the Failover reports for an answer
            else:
                r.observe(refused())
                raise refused()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reconnect, r, probe, params)
            await trio.sleep(8.0)
            assert probes == [0.0, 0.5, 1.5, 3.5, 7.5]
            await trio.sleep(0.1)
            with pytest.raises(ServerOffline):       # a read refused: it asks for a probe soon
                await Gate(r).run("a read", probe)
            await trio.sleep(0.5)
            assert probes[-1] == 8.1                 # at once (first_s since the last probe passed), not at 11.5
            await trio.sleep(30.0)
            assert probes == pytest.approx([0.0, 0.5, 1.5, 3.5, 7.5, 8.1, 12.1, 16.1, 20.1])   # capped at max_s
            assert r.online and r.reconnects == 1 and r.probes == len(probes)
            count = len(probes)
            await trio.sleep(60.0)
            assert len(probes) == count, "no probe while online"
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
