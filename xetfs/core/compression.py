"""Chunk compression: the three schemes of a chunk record and the automatic choice (docs/protocol.md, "Xorbs").

NONE = raw; LZ4 = one LZ4 *frame* (independent blocks, no checksums, no content size, like xet-core's
``lz4_flex`` encoder); BG4_LZ4 = byte grouping (bytes 0,4,8.. then 1,5,9.. then 2.. then 3..) followed by an
LZ4 frame. The automatic choice samples a few slices of the chunk and compresses them with raw LZ4 blocks,
plain and byte-grouped: if neither shrinks the sample the chunk is stored raw without compressing it at all
(random data costs ~2 sample compressions), otherwise the better scheme wins (LZ4 on a tie: it decodes
faster); text-like samples (printable ASCII) only try LZ4.
"""
from __future__ import annotations

from enum import IntEnum

import lz4.block
import lz4.frame

from xetfs.errors import FormatError

# Auto choice: sample SAMPLE_SLICES slices of SAMPLE_SLICE_BYTES (4-aligned so byte groups keep
# their phase); a sample must shrink below MIN_SAMPLE_RATIO to be worth compressing the whole chunk.
_SAMPLE_SLICE_BYTES = 4096
_SAMPLE_SLICES = 4
# Small samples underestimate what LZ4 achieves on the whole chunk, hence a ratio close to 1.
_MIN_SAMPLE_RATIO = 0.995
_BG4_MARGIN = 0.01  # BG4 must save 1% of the sample more than plain LZ4 to be chosen
# Text (printable ASCII + whitespace) is never byte-grouped: LZ4 alone suits it and decodes faster.
_TEXT_BYTES = bytes([9, 10, 11, 12, 13, *range(32, 127)])
_MAX_NON_TEXT_FRACTION = 0.02
_TEXT_PROBE_BYTES = 1024


class CompressionScheme(IntEnum):
    NONE = 0
    LZ4 = 1
    BG4_LZ4 = 2


# ---------------------------------------------------------------- byte grouping

def bg4_split(data: bytes | memoryview) -> bytes:
    """Regroup ``data``: bytes at positions 0,4,8,.. then 1,5,9,.. then 2,.. then 3,.."""
    if len(data) % 4 == 0:   # one transposing copy (a sample is always a multiple of 4 bytes)
        import numpy as np   # imported at first use: a download of data never byte-grouped needs none of it

        return np.frombuffer(data, dtype=np.uint8).reshape(-1, 4).T.tobytes()
    d = bytes(data)
    return d[0::4] + d[1::4] + d[2::4] + d[3::4]


def bg4_join(grouped: bytes | memoryview) -> bytes:
    """Inverse of ``bg4_split``: group ``i`` holds ``n//4 + (i < n%4)`` bytes, interleaved back."""
    import numpy as np   # see bg4_split

    src = np.frombuffer(grouped, dtype=np.uint8)
    n = len(src)
    q, r = divmod(n, 4)
    out = np.empty(n, dtype=np.uint8)
    start = 0
    for i in range(4):
        size = q + (i < r)
        out[i::4] = src[start:start + size]
        start += size
    return out.tobytes()


# ---------------------------------------------------------------- compress / decompress

def lz4_frame(data: bytes) -> bytes:
    # xet-core: lz4_flex FrameEncoder defaults; block size from the (single) write.
    block = lz4.frame.BLOCKSIZE_MAX64KB if len(data) <= 65536 else lz4.frame.BLOCKSIZE_MAX256KB
    out: bytes = lz4.frame.compress(data, block_size=block, block_linked=False, content_checksum=False,
                                    block_checksum=False, store_size=False)
    return out


def compress(raw: bytes, scheme: CompressionScheme) -> bytes:
    """The payload of ``raw`` under ``scheme`` (it may be longer than ``raw``: the caller then stores NONE)."""
    if scheme == CompressionScheme.LZ4:
        return lz4_frame(raw)
    if scheme == CompressionScheme.BG4_LZ4:
        return lz4_frame(bg4_split(raw))
    return raw


def decompress(payload: memoryview, scheme: CompressionScheme, expected: int, what: str) -> bytes:
    """The ``expected`` uncompressed bytes of a payload; ``FormatError`` naming ``what`` if it is bad."""
    if scheme == CompressionScheme.NONE:
        return bytes(payload)
    out = _lz4_decompress(payload, expected, what)
    return bg4_join(out) if scheme == CompressionScheme.BG4_LZ4 else out


def _lz4_decompress(payload: memoryview, expected: int, what: str) -> bytes:
    try:
        decoder = lz4.frame.LZ4FrameDecompressor()
        out: bytes = decoder.decompress(payload, max_length=expected + 1)
        complete, unused = decoder.eof, decoder.unused_data
    except Exception as exc:  # lz4 raises RuntimeError/ValueError/... on bad frames
        raise FormatError(f"bad LZ4 frame in {what}: {exc}") from None
    if not complete or unused:
        raise FormatError(f"LZ4 frame of {what} is truncated or has trailing bytes")
    if len(out) != expected:
        raise FormatError(f"{what} decodes to {len(out)} bytes, header says {expected}")
    return out


# ---------------------------------------------------------------- automatic choice

def _sample(data: bytes) -> bytes:
    n = len(data)
    if n <= _SAMPLE_SLICE_BYTES * _SAMPLE_SLICES:
        return data
    step = (n - _SAMPLE_SLICE_BYTES) // (_SAMPLE_SLICES - 1)
    return b"".join(data[(i * step) & ~3:((i * step) & ~3) + _SAMPLE_SLICE_BYTES] for i in range(_SAMPLE_SLICES))


def _looks_like_text(sample: bytes) -> bool:
    limit = len(sample) * _MAX_NON_TEXT_FRACTION
    # A prefix holding more non-text bytes than the whole sample may settles it (binary data, the common
    # case) at a fraction of the cost: the same answer as the full count, which holds the GIL.
    if len(sample[:_TEXT_PROBE_BYTES].translate(None, _TEXT_BYTES)) > limit:
        return False
    return len(sample.translate(None, _TEXT_BYTES)) <= limit


def choose_scheme(data: bytes) -> CompressionScheme:
    """The automatic per-chunk choice (cheap estimate from a sample; see the module docstring)."""
    sample = _sample(data)
    if len(sample) < 16:
        return CompressionScheme.NONE
    lz4_size = len(lz4.block.compress(sample, store_size=False))
    if _looks_like_text(sample):
        return CompressionScheme.LZ4 if lz4_size < len(sample) * _MIN_SAMPLE_RATIO else CompressionScheme.NONE
    bg4_size = len(lz4.block.compress(bg4_split(sample), store_size=False))
    best = min(lz4_size, bg4_size)
    if best >= len(sample) * _MIN_SAMPLE_RATIO:
        return CompressionScheme.NONE
    if bg4_size + len(sample) * _BG4_MARGIN < lz4_size:
        return CompressionScheme.BG4_LZ4
    return CompressionScheme.LZ4
