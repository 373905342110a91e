"""The seam between the read path and the CAS: ``ChunkSource`` (docs/architecture.md, "The read path").

``xetfs.client.cas.CasClient`` is the one the product wires in; tests may pass anything with these
methods. ``ReadStats`` are the read path's counters, shared by every reader of one ``Fetcher``, with two
``Latencies`` (fetch and reconstruction histograms, served by ``xetfs.fs.metrics``); ``FileCounters`` those of
one file.
"""
from __future__ import annotations

from bisect import bisect_left
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from xetfs.core.hashing import MerkleHash
from xetfs.core.reconstruction import FetchRange, Reconstruction


class RangeStream(Protocol):
    """The body of one GET of a fetch range, received in order (``xetfs.transport.rangeget.RangeBody``)."""

    async def recv_into(self, out: memoryview) -> int: ...


class ChunkSource(Protocol):
    """Reconstructions of files and the bytes of xorb ranges (docs/protocol.md, "Reconstruction").
    ``open_range`` gives a fetch range's body to receive in pieces, or None: then ``fetch_range_into``
    fetches each piece."""

    async def reconstruction(self, file_hash: MerkleHash,
                             byte_range: tuple[int, int] | None = None) -> Reconstruction: ...

    async def fetch_range_into(self, fr: FetchRange, out: bytearray | memoryview) -> int: ...

    def open_range(self, fr: FetchRange) -> AbstractAsyncContextManager[RangeStream | None]: ...


# Upper bounds (seconds) of the latency buckets: a 1 MiB fetch on loopback takes milliseconds, a slow link seconds.
LATENCY_BOUNDS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(slots=True)
class Latencies:
    """A latency histogram without cumulative sums: ``counts[i]`` durations fell in ``(bounds[i-1], bounds[i]]``,
    the last count past every bound; ``sum_s`` their total (docs/architecture.md, "Metrics")."""

    bounds: tuple[float, ...] = LATENCY_BOUNDS_S
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_S) + 1))
    sum_s: float = 0.0

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.bounds) + 1:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum_s += seconds

    def copy(self) -> Latencies:
        return Latencies(self.bounds, list(self.counts), self.sum_s)


@dataclass(slots=True)
class ReadStats:
    bytes_fetched: int = 0           # xorb bytes received from the network
    fetches: int = 0
    fetches_joined: int = 0          # fetches served by running ones holding all their chunks
    reconstructions: int = 0
    refetches: int = 0               # integrity or expired-URL retries
    integrity_failures: int = 0
    read_errors: int = 0
    pending_fetches: int = 0
    pending_reconstructions: int = 0
    layouts_loaded: int = 0          # files whose chunk layout came from the disk tier (no reconstruction)
    fetch_seconds: Latencies = field(default_factory=Latencies)            # each xorb range fetch attempt
    reconstruction_seconds: Latencies = field(default_factory=Latencies)   # each answered reconstruction query


@dataclass(slots=True)
class FileCounters:
    """Per file (one ``FileReader``), for ``xetfs stats``."""

    bytes_fetched: int = 0           # xorb bytes of the fetches this file started
    whole_file_streams: int = 0      # times the rest of the file was streamed in the background


@dataclass(frozen=True, slots=True)
class OpenFileStats:
    """One open file in ``xetfs stats``: its handles, the bytes they read, the bytes fetched for it, and how
    the readahead fetched its reads (``decisions``: sequential / tensor_aligned / column_aligned / exact)."""

    path: str
    handles: int
    bytes_read: int
    bytes_fetched: int
    whole_file_streams: int
    decisions: dict[str, int]
