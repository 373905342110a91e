"""``Reachability`` (docs/architecture.md, "Offline mode"): which failures count, when a mount degrades and
when it comes back."""
from __future__ import annotations

import errno

import pytest

from xetfs.errors import NotFound, TransientError, Unauthorized
from xetfs.transport.reachability import (DEGRADED, OFFLINE, ONLINE, Reachability, ServerOffline,
                                          unreachable)


def refused() -> TransientError:
    return TransientError("cannot reach host", http_status=0, request_sent=False)


def test_connection_failures_and_5xx_count_answers_do_not() -> None:
    assert unreachable(refused())
    assert unreachable(TransientError("502", http_status=502))
    assert unreachable(TransientError("gave up after 15 s"))             # a retry schedule out of time
    assert not unreachable(TransientError("429", http_status=429))       # a live server asking to slow down
    assert not unreachable(Unauthorized("401", http_status=401))
    assert not unreachable(NotFound("404", http_status=404))


def test_failures_in_a_row_degrade_and_any_answer_brings_it_back() -> None:
    switches: list[tuple[str, str]] = []
    r = Reachability(failures_to_degrade=3, now=lambda: 100.0)
    r.on_change(lambda old, new: switches.append((old, new)))
    r.observe(refused())
    r.observe(refused())
    r.observe(NotFound("404", http_status=404))     # an answer: the count starts again
    r.observe(refused())
    r.observe(refused())
    assert r.state == ONLINE and r.failures_in_row == 2
    r.observe(refused())
    assert r.state == DEGRADED and switches == [(ONLINE, DEGRADED)]
    with pytest.raises(ServerOffline) as caught:
        r.check()
    assert caught.value.errno == errno.EIO and not caught.value.retryable
    r.observe(refused())
    assert switches == [(ONLINE, DEGRADED)], "one switch, however many failures follow"
    r.observe(None)
    assert r.state == ONLINE and switches[-1] == (DEGRADED, ONLINE)
    s = r.snapshot()
    assert (s.degraded_switches, s.reconnects, s.failures_in_row) == (1, 1, 0) and s.last_error == "cannot reach host"


def test_an_offline_start_leaves_offline_at_the_first_answer() -> None:
    r = Reachability(OFFLINE)
    with pytest.raises(ServerOffline):
        r.check()
    r.observe(Unauthorized("401", http_status=401))
    assert r.online and r.reconnects == 1
