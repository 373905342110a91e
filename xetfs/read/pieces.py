"""Receiving one fetch range in pieces, decoding the previous piece meanwhile (docs/architecture.md, "The
read path"; docs/protocol.md, "Xorbs").

``PieceReceiver.fetch(fr)`` asks the source for one GET of the whole range (``ChunkSource.open_range``) and
receives its body ``piece_bytes`` at a time into two pooled buffers, so while one piece arrives the complete
chunk records of the previous one (``core.xorb.split_complete_records``) are decoded and hashed in a worker
thread. A record cut by a piece's end is copied in front of the next piece (each buffer keeps
``max_record_bytes`` of headroom for it). When the source gives no such GET, or it breaks off, each remaining
piece is a range GET of its own (``fetch_range_into``, which retries by classification). One GET per range
instead of one per piece: a quarter of the requests for 4 MiB pieces of ~16 MiB ranges (docs/architecture.md,
"Performance").

The buffers are a fixed pool (``max_pooled_buffers``, reused, never freed): part of the daemon's fixed memory.
"""
from __future__ import annotations

import dataclasses
import functools
import logging

import trio

from xetfs.core.hashing import MerkleHash, chunk_hash
from xetfs.core.params import XorbParams
from xetfs.core.reconstruction import FetchRange
from xetfs.core.xorb import CHUNK_HEADER_BYTES, decode_record, parse_chunk_records, split_complete_records
from xetfs.errors import TransientError
from xetfs.read.flight import concurrently, maybe_thread
from xetfs.read.source import ChunkSource, RangeStream, ReadStats

log = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class _Body:
    """The fetch range's one GET, dropped (None) once it broke off or never opened."""
    stream: RangeStream | None


class PieceReceiver:
    """The piece pipeline of a ``Fetcher``: its source, counters, CPU limiter and buffer pool."""

    def __init__(self, cas: ChunkSource, stats: ReadStats, cpu: trio.CapacityLimiter, params: XorbParams,
                 piece_bytes: int, *, max_pooled_buffers: int) -> None:
        self.cas = cas
        self.stats = stats
        self.cpu = cpu
        self.params = params
        self.max_record_bytes = CHUNK_HEADER_BYTES + params.max_chunk_compressed
        self.piece_bytes = max(piece_bytes, self.max_record_bytes)
        self.max_pooled_buffers = max_pooled_buffers
        self._buffers: list[bytearray] = []

    async def fetch(self, fr: FetchRange) -> tuple[list[bytes], list[MerkleHash]]:
        """The chunks of ``fr`` and their chunk hashes, not yet verified."""
        chunks: list[bytes] = []
        hashes: list[MerkleHash] = []
        bufs = [self._take_buffer(), self._take_buffer()]
        try:
            async with self.cas.open_range(fr) as stream:   # one GET for every piece, while it holds
                await self._pieces(fr, _Body(stream), bufs, chunks, hashes)
            self.stats.fetches += 1
        finally:
            self._buffers.extend(bufs[:max(0, self.max_pooled_buffers - len(self._buffers))])
        return chunks, hashes

    async def _pieces(self, fr: FetchRange, body: _Body, bufs: list[bytearray],
                      chunks: list[bytes], hashes: list[MerkleHash]) -> None:
        head = self.max_record_bytes
        pos, end, i = fr.byte_start, fr.byte_end + 1, 0
        prev: memoryview | None = None          # the last piece (with its carried-in head), undecoded
        while True:
            buf = bufs[i % 2]
            n = min(self.piece_bytes, end - pos)
            consumed = [0]
            decode = None if prev is None else functools.partial(
                self._decode_piece_async, prev, n == 0, chunks, hashes, consumed)
            fetch = None if n == 0 else functools.partial(
                self._receive, body, dataclasses.replace(fr, byte_start=pos, byte_end=pos + n - 1),
                memoryview(buf)[head:head + n])
            await concurrently(decode, fetch)
            if n == 0:
                return
            self.stats.bytes_fetched += n
            tail = memoryview(b"") if prev is None else prev[consumed[0]:]
            buf[head - len(tail):head] = tail
            prev = memoryview(buf)[head - len(tail):head + n]
            pos += n
            i += 1

    async def _receive(self, body: _Body, piece: FetchRange, out: memoryview) -> None:
        """The next piece: from the fetch range's one GET while it holds, else a range GET of its own."""
        if body.stream is not None:
            try:
                await body.stream.recv_into(out)
                return
            except TransientError as exc:   # its connection is closed on leaving ``open_range``
                log.debug("GET of xorb %s broke off (%s): fetching the rest piece by piece", piece.xorb_hash, exc)
                body.stream = None
        await self.cas.fetch_range_into(piece, out)

    def _take_buffer(self) -> bytearray:
        return self._buffers.pop() if self._buffers else bytearray(self.max_record_bytes + self.piece_bytes)

    async def _decode_piece_async(self, view: memoryview, final: bool, chunks: list[bytes],
                                  hashes: list[MerkleHash], consumed: list[int]) -> None:
        got, got_hashes, consumed[0] = await maybe_thread(self._decode_piece, len(view), self.cpu, view, final)
        chunks.extend(got)
        hashes.extend(got_hashes)

    def _decode_piece(self, view: memoryview, final: bool) -> tuple[list[bytes], list[MerkleHash], int]:
        """Decode + hash the complete records of ``view``; a cut record at its end is left (unless final)."""
        if final:
            records = parse_chunk_records(view, self.params)
        else:
            records, _ = split_complete_records(view, self.params)
        out = [decode_record(view, r) for r in records]
        return out, [chunk_hash(c) for c in out], records[-1].end if records else 0
