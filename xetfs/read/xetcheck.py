"""Check a downloaded Xet file against the Xet file hash the listing names (docs/protocol.md, "Hashes").

The reader verifies every term against its verification hash, but the terms come from the server's
reconstruction: only the file hash ties the bytes to the file the listing names. Its leaves are the
chunks' hashes and sizes, so checking it costs one keyed BLAKE3 pass over the bytes (about a third of a
sha256 pass), and the chunk boundaries are the ones the reader learned from the reconstruction: a server
that lies about them only changes the hash, which then fails.

``feed`` takes the file's bytes in order, in any pieces, with the sizes of the chunks starting where the
complete chunks end; a chunk cut by the end of a piece is carried (at most one chunk) to the next piece.
For a chunk that lies whole in a piece, ``hash_at(file offset, size)`` may give its hash: the one the
fetcher computed, in this process, from the very chunk object whose bytes are at that place in the piece
(``read.assembly``, ``ChunkCache.verified_hash``); such a chunk is not hashed again. A hash a server claims
never goes in: each leaf is the hash of the bytes fed at its place, so the file hash still ties them to
the listing.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from xetfs.core.hashing import MerkleHash, chunk_hash, file_hash
from xetfs.core.params import DEFAULT_CHUNKING
from xetfs.errors import IntegrityError

HashAt = Callable[[int, int], bytes | None]   # (file offset, size) -> the hash of the bytes fed there, if known


class XetFileCheck:
    """The file hash of ``size`` bytes fed in order, compared with ``expected`` by ``verify``."""

    def __init__(self, name: str, size: int, expected: MerkleHash) -> None:
        self.name, self.size, self.expected = name, size, expected
        self.hashed = 0                       # bytes of the complete chunks hashed so far
        self._leaves: list[tuple[bytes, int]] = []
        self._carry = bytearray()             # the start of the chunk that begins at ``hashed``

    def feed(self, data: bytes | memoryview, sizes: Sequence[int], hash_at: HashAt | None = None) -> None:
        """The next bytes of the file; ``sizes``: the chunks from ``hashed`` on (more than cover is fine);
        ``hash_at``: asked for each chunk whole in ``data`` (its file offset and size), None to hash it."""
        view = memoryview(data).cast("B")
        pos, i = 0, 0
        if self._carry:
            need = sizes[0] - len(self._carry) if sizes else len(view) + 1
            if need > len(view):
                self._take_carry(view)
                return
            self._carry += view[:need]
            self._leaf(self._carry)
            self._carry = bytearray()
            pos, i = need, 1
        while i < len(sizes) and pos + sizes[i] <= len(view):
            self._leaf(view[pos:pos + sizes[i]], None if hash_at is None else hash_at(self.hashed, sizes[i]))
            pos += sizes[i]
            i += 1
        self._take_carry(view[pos:])

    def verify(self) -> None:
        """IntegrityError unless the bytes fed are exactly the file the listing names."""
        if self._carry or self.hashed != self.size or file_hash(self._leaves) != self.expected:
            raise IntegrityError(f"{self.name}: the downloaded bytes are not the listed file "
                                 f"({self.size} bytes, Xet hash {self.expected})")

    def _leaf(self, chunk: bytes | bytearray | memoryview, known: bytes | None = None) -> None:
        self._leaves.append((chunk_hash(chunk) if known is None else known, len(chunk)))
        self.hashed += len(chunk)

    def _take_carry(self, rest: memoryview) -> None:
        self._carry += rest
        if len(self._carry) > DEFAULT_CHUNKING.max_chunk_size:   # no chunk is this long: the sizes were missing
            raise IntegrityError(f"{self.name}: no chunk layout for the bytes at offset {self.hashed}")
