"""The mount's ``Gate`` (``xetfs.fs.offline``): calls that need the server are refused at once unless online,
and the ones waiting on it are cancelled (EIO) when the mount goes degraded."""
from __future__ import annotations

import pytest
import trio

from xetfs.errors import TransientError
from xetfs.fs.offline import Gate
from xetfs.transport.reachability import Reachability, ServerOffline


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
