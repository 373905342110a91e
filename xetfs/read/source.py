"""The seam between the read path and the CAS: ``ChunkSource`` (docs/architecture.md, "The read path").

``xetfs.client.cas.CasClient`` is the one the product wires in; tests may pass anything with these two
methods. ``ReadStats`` are the read path's counters, shared by every reader of one ``Fetcher``;
``FileCounters`` those of one file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from xetfs.core.hashing import MerkleHash
from xetfs.core.reconstruction import FetchRange, Reconstruction


class ChunkSource(Protocol):
    """Reconstructions of files and the bytes of xorb ranges (docs/protocol.md, "Reconstruction")."""

    async def reconstruction(self, file_hash: MerkleHash,
                             byte_range: tuple[int, int] | None = None) -> Reconstruction: ...

    async def fetch_range_into(self, fr: FetchRange, out: bytearray | memoryview) -> int: ...


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
