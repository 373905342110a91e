"""Whole-file streams (``read.stream.FileStream``) against files that only record what is asked of them: a
stream stays within its lead of the bytes its reader asked for, the running streams share the lead, bytes a
parked stream fetched ahead count against the others' lead until they are read, a stream
wakes when its own reader reads on or when another stream ends, and never for another file's reads; a stream
at its lead whose file has no open handle parks (ends, to be started again by the file's next open)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import trio
import trio.testing

from xetfs.read.flight import Pending, StreamLead
from xetfs.read.readahead import Runs
from xetfs.read.stream import FileStream
from xetfs.read.windows import Window


@dataclass
class Background:
    streams: StreamLead
    nursery: trio.Nursery | None = None


class RecordingFile:
    """A file of ``size`` bytes, open once, whose reconstruction windows cover exactly what was queried."""

    def __init__(self, size: int, background: Background) -> None:
        self.size = size
        self.stream = FileStream(self, background)
        self.stream.opened()
        self.asked = Runs()
        self.queried: list[tuple[int, int]] = []

    def read(self, offset: int, end: int) -> None:
        self.asked.add(offset, end)
        self.stream.read()

    def read_below(self, pos: int) -> int:
        return self.asked.below(pos)

    def next_missing(self, pos: int) -> int:
        return max([pos, *(stop for _, stop in self.queried)])

    async def prefetch_query(self, pos: int, stop: int) -> Window:
        self.queried.append((pos, stop))
        return Window(pos, stop, Pending(), 0.0, recon=object(), cov_start=pos, cov_end=stop)  # type: ignore[arg-type]

    async def prefetch_fill(self, w: Window) -> None:
        await trio.sleep(0)


def _done(log: list[str], name: str) -> Callable[[], None]:
    return lambda: log.append(name)


def test_streams_share_the_lead_and_wake_for_their_own_reader_only() -> None:
    async def main() -> None:
        lead = StreamLead(30)
        a, b = RecordingFile(100, Background(lead)), RecordingFile(100, Background(lead))
        done: list[str] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.stream.stream, 10, _done(done, "a"))
            await trio.testing.wait_all_tasks_blocked()
            assert a.queried == [(0, 10), (10, 20), (20, 30)]          # alone: the whole lead, 30 bytes

            nursery.start_soon(b.stream.stream, 10, _done(done, "b"))
            await trio.testing.wait_all_tasks_blocked()
            assert b.queried == [(0, 10)]                              # two streams: 15 bytes each

            waiting = a.stream._moved
            b.read(0, 10)
            await trio.testing.wait_all_tasks_blocked()
            assert b.queried[-1] == (10, 20)                           # its reader moved on: so does it
            assert waiting is not None and not waiting.is_set()        # another file's read wakes no other stream
            assert a.stream._moved is waiting

            a.read(0, 100)
            await trio.testing.wait_all_tasks_blocked()
            assert a.queried[-1] == (90, 100) and done == ["a"]
            assert b.queried[-1] == (30, 40)                           # a ended: b has the whole lead again

            b.read(10, 100)
        assert done == ["a", "b"] and lead.running == 0
        assert [w for w, _ in b.queried] == list(range(0, 100, 10))   # every window once, in file order

    trio.run(main)


def test_a_stream_at_its_lead_with_no_handle_open_parks_and_goes_on_at_the_next_open() -> None:
    async def main() -> None:
        lead = StreamLead(30)
        async with trio.open_nursery() as nursery:
            f = RecordingFile(100, Background(lead, nursery))
            f.stream.closed()                                          # a sibling shard nobody has open
            assert f.stream.start(10) and not f.stream.start(10)       # once
            await trio.testing.wait_all_tasks_blocked()
            assert f.queried == [(0, 10), (10, 20), (20, 30)]          # its lead, then it parked
            assert lead.running == 0

            f.stream.opened()                                          # opened: it goes on, from byte 30
            await trio.testing.wait_all_tasks_blocked()
            assert f.queried[3:] == [] and lead.running == 1           # waits for its reader now
            f.stream.closed()                                          # closed at the lead: parks again
            await trio.testing.wait_all_tasks_blocked()
            assert lead.running == 0

            f.stream.opened()
            f.read(0, 100)
        assert [w for w, _ in f.queried] == list(range(0, 100, 10)) and lead.running == 0

    trio.run(main)


def test_what_a_parked_stream_fetched_ahead_counts_against_the_lead_until_read() -> None:
    """A sibling shard's stream fetched its lead and parked; those bytes stay in the memory tier until the loader
    reads them, so the stream of the file being loaded gets only what they leave (never less than one window)."""
    async def main() -> None:
        lead = StreamLead(30)
        async with trio.open_nursery() as nursery:
            parked = RecordingFile(100, Background(lead, nursery))
            parked.stream.closed()
            assert parked.stream.start(10)
            await trio.testing.wait_all_tasks_blocked()
            assert parked.queried == [(0, 10), (10, 20), (20, 30)] and lead.running == 0

            loading = RecordingFile(100, Background(lead, nursery))
            nursery.start_soon(loading.stream.stream, 10, _done([], "loading"))
            await trio.testing.wait_all_tasks_blocked()
            assert loading.queried == [(0, 10)], "30 bytes ahead already: one window"
            loading.read(0, 10)
            await trio.testing.wait_all_tasks_blocked()
            assert loading.queried[-1] == (10, 20)

            parked.read(0, 30)                       # the loader got to the parked file's bytes
            loading.read(10, 20)
            await trio.testing.wait_all_tasks_blocked()
            assert loading.queried[-1] == (40, 50), "the whole lead again: 30 bytes past what was read"
            loading.read(20, 100)
            parked.stream.opened()
            parked.read(30, 100)
        assert [w for w, _ in loading.queried] == list(range(0, 100, 10))

    trio.run(main)
