"""Chunking (docs/protocol.md, "Chunks"): the test-vector boundaries and chunk hashes exactly; every backend
(native C, numpy, the plain per-byte reference) gives the same boundaries; any split of a stream gives the
same chunks."""
from __future__ import annotations

import threading

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xetfs.core import chunking
from xetfs.core.chunking import (
    GEAR_TABLE,
    SCANNERS,
    Chunk,
    Chunker,
    _boundaries_simple,
    chunk_boundaries,
    chunk_data,
    file_hash_of,
)
from xetfs.core.params import DEFAULT_CHUNKING, ChunkingParams

TINY = ChunkingParams.tiny()
# min < 64: the numpy scanner must step aside and the native one must not skip (the min-size skip).
SMALL_MIN = ChunkingParams(target_chunk_size=64, min_chunk_size=16, max_chunk_size=256)
FAST_BACKENDS = [name for name in ("native", "numpy") if name in SCANNERS]


def xof(seed: bytes, n: int) -> bytes:
    """Test-vector generator: the first n bytes of the unkeyed BLAKE3 XOF of seed."""
    return blake3.blake3(seed).digest(length=n)


# ---------------------------------------------------------------- test vectors

XOF_1M_BOUNDARIES = [19226, 68200, 199272, 322553, 332750, 420327, 444648, 575720, 677724, 703245, 815939,
                     851537, 901656, 919502, 983509, 1000000]
XOF_3M_BOUNDARIES = XOF_1M_BOUNDARIES[:-1] + [
    1016112, 1032013, 1047540, 1117407, 1192428, 1323500, 1400401, 1501183, 1632255, 1763327, 1881211,
    2012283, 2059329, 2106783, 2216593, 2338054, 2469126, 2591905, 2692059, 2794190, 2827170, 2866834,
    2940799, 3000000]
XOF_1M_CHUNK_HASHES = [
    "8c60eaa20fec9b7b3c94e27c3a91324d43402ee2615e24876029ce9fb516f750",
    "f294e5f84793770e6f3edf8e92bbf661f8f518e622eb9e0d04043d977ceb0ba6",
    "df7256b00da8c8192eba3e495d7c8b6bbfd17221c9149c6f01d8bb9613bb624e",
    "8de4f8c64e4826855e2479f6fe6fae7bc7954a1e304953390a00843b09bb4db1",
    "1369b41975718bf3898acb6e64b2afb6e893063a13fb59a76997182ec7d483f3",
    "3d054715a2d9588cf7f9bfc05645496c6abbe240949bb43bdb5357a69e83e605",
    "603455dd5a1b5c97cbf0f31edcf7eab03b57c3bd95f21548a1ac1b6a9e13762c",
    "5addedd1a249afef8a4e0b354b7fe9b62cf3191f9d3e5618fbfa004a0ce9d5b0",
    "939c8ec2ebac9a0e82b699250645ca504e871d68f09e87b5d594997bc6eaed00",
    "81efd3d7063124654749adf071ffea95530fc75f0beae5c4d1117b2945cadd33",
    "0f619236f5b13a831cb1ab3d150d7d0789a303ecc61628cd80c7c5c654817657",
    "3cb8a080fcef46fd5ec39b85255dafdd013c5b1307eca9b35c5799fbdc80e116",
    "46b750fa07e094fa7770fa77d44007037e64d77722d641a8725d32b232c3d345",
    "6c7cf19c7a0168291aa7a43cc2751856b2667a41aa67da93671daa8d2c90b6a6",
    "b5ad28c84a419ae697795567998e3610a4efb49954dc53c36410170899700044",
    "62764fdab41da9d66dd68c447614afc6b39adb5af28b0afb98d1374b0addcf28",
]
ZEROS_MAX_CHUNK_HASH = "2e39f13c248013b27e22913ba2893a654120ed0ad8eb7ecbf3f05b9d708634fc"
ZEROS_TAIL_HASH = "975a806e413796067d8ea18f1544f995fc21554f7b7093d9e9264c76c7dd04c8"
I_MOD_251_BOUNDARIES = [131072, 262144, 393216, 500000]
I_MOD_251_CHUNK_HASHES = [
    "609c31da33ad3bce3c6d350d608a9a352a25917fe7127bdac3d33048ccf8c190",
    "1b5ff2ea8a89add5342902199a41be2b4f310df9f24aea2420c94c34fb234454",
    "847c4904b911e4a26a516c702703b4bb6acfbfe79d33023768f633d56c6153c0",
    "d1e8d3623248b83e7a345561b106657cece2243d81a19c0b82e16a224ba8b6d7",
]

XOF_3M = xof(b"xet", 3000000)
XOF_1M = XOF_3M[:1000000]
ZEROS_1M = bytes(1000000)
I_MOD_251 = bytes(i % 251 for i in range(500000))


def _assert_chunks(chunks: list[Chunk], boundaries: list[int], hashes: list[str]) -> None:
    assert [c.size for c in chunks] == [e - s for s, e in zip([0] + boundaries, boundaries)]
    assert [str(c.hash) for c in chunks] == hashes


def test_gear_table_matches_spec_file_ends() -> None:
    assert len(GEAR_TABLE) == 256
    assert GEAR_TABLE[0] == 0xB088D3A9E840F559 and GEAR_TABLE[255] == 0x63C7A906C1DD187B


def test_default_mask_is_high_16_bits() -> None:
    assert DEFAULT_CHUNKING.mask == 0xFFFF000000000000


def test_xof_1m_boundaries_and_chunk_hashes() -> None:
    assert chunk_boundaries(XOF_1M) == XOF_1M_BOUNDARIES
    _assert_chunks(chunk_data(XOF_1M), XOF_1M_BOUNDARIES, XOF_1M_CHUNK_HASHES)


def test_xof_3m_boundaries() -> None:
    assert chunk_boundaries(XOF_3M) == XOF_3M_BOUNDARIES


def test_zeros_are_cut_at_max() -> None:
    boundaries = [131072 * k for k in range(1, 8)] + [1000000]
    _assert_chunks(chunk_data(ZEROS_1M), boundaries, [ZEROS_MAX_CHUNK_HASH] * 7 + [ZEROS_TAIL_HASH])


def test_i_mod_251_boundaries_and_chunk_hashes() -> None:
    _assert_chunks(chunk_data(I_MOD_251), I_MOD_251_BOUNDARIES, I_MOD_251_CHUNK_HASHES)


@pytest.mark.parametrize("name", ["python", *FAST_BACKENDS])
@pytest.mark.parametrize(("data", "expected"), [
    (XOF_1M, XOF_1M_BOUNDARIES), (ZEROS_1M[:300000], [131072, 262144, 300000]),
    (I_MOD_251, I_MOD_251_BOUNDARIES), (b"", []), (b"a", [1]), (bytes(8191), [8191]),
], ids=["xof_1m", "zeros", "i_mod_251", "empty", "one_byte", "below_min"])
def test_every_backend_gives_the_vector_boundaries(name: str, data: bytes, expected: list[int]) -> None:
    assert chunk_boundaries(data, backend=name) == expected


def test_reference_scanner_is_the_simple_path() -> None:
    assert _boundaries_simple(XOF_1M) == XOF_1M_BOUNDARIES


# ---------------------------------------------------------------- fast paths == the simple path

def _inputs(seed: bytes) -> dict[str, bytes]:
    rnd = xof(seed, 400000)
    return {
        "random": rnd,
        "zeros": bytes(70000),
        "periodic": (rnd[:977] * 300)[:250000],
        "low_entropy": bytes(b & 3 for b in rnd[:200000]),
        "mixed": rnd[:50000] + bytes(40000) + rnd[50000:120000],
    }


@pytest.mark.parametrize("name", FAST_BACKENDS)
@pytest.mark.parametrize("params", [TINY, SMALL_MIN, DEFAULT_CHUNKING], ids=["tiny", "small_min", "default"])
def test_fast_backends_equal_simple(name: str, params: ChunkingParams) -> None:
    for kind, data in _inputs(b"fast-vs-simple").items():
        assert chunk_boundaries(data, params, backend=name) == _boundaries_simple(data, params), kind


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=6000), seed=st.integers(0, 3))
def test_backends_agree_on_arbitrary_bytes_tiny(data: bytes, seed: int) -> None:
    data = data * (seed + 1)  # repeats make periodic inputs
    expected = _boundaries_simple(data, TINY)
    for name in FAST_BACKENDS:
        assert chunk_boundaries(data, TINY, backend=name) == expected


def test_chunk_sizes_respect_min_and_max() -> None:
    for params in (TINY, DEFAULT_CHUNKING):
        for data in _inputs(b"sizes").values():
            sizes = [c.size for c in chunk_data(data, params)]
            assert sum(sizes) == len(data)
            assert all(params.min_chunk_size <= n <= params.max_chunk_size for n in sizes[:-1])
            assert 0 < sizes[-1] <= params.max_chunk_size


# ---------------------------------------------------------------- streaming

def _stream(data: bytes, cuts: list[int], params: ChunkingParams, backend: str | None = None) -> list[Chunk]:
    chunker = Chunker(params, backend=backend)
    out: list[Chunk] = []
    points = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    for a, b in zip(points, points[1:]):
        out += chunker.feed(memoryview(data)[a:b])
    return out + chunker.finish()


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 400000), max_size=12), backend=st.sampled_from(["python", *FAST_BACKENDS]))
def test_any_split_gives_the_same_chunks_default(cuts: list[int], backend: str) -> None:
    data = XOF_3M[:400000] if backend != "python" else XOF_3M[:150000]
    assert _stream(data, cuts, DEFAULT_CHUNKING, backend) == chunk_data(data)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 5000), max_size=10),
       backend=st.sampled_from(["python", *FAST_BACKENDS]))
def test_any_split_gives_the_same_chunks_tiny(data: bytes, cuts: list[int], backend: str) -> None:
    data = data + XOF_1M[:len(data)]
    assert _stream(data, cuts, TINY, backend) == chunk_data(data, TINY, backend="python")


def test_byte_by_byte_feed_matches() -> None:
    data = XOF_1M[:20000]
    assert _stream(data, list(range(1, len(data))), TINY) == chunk_data(data, TINY)


def test_chunker_copies_its_input_and_can_be_reused() -> None:
    chunker = Chunker(TINY)
    buf = bytearray(XOF_1M[:10000])
    first = chunker.feed(buf)
    buf[:] = bytes(len(buf))  # the caller reuses its read buffer
    first += chunker.finish()
    assert first == chunk_data(XOF_1M[:10000], TINY)
    assert chunker.finish() == []
    assert chunker.feed(b"") == [] and chunker.finish() == []
    assert chunker.feed(b"abc") == [] and [c.data for c in chunker.finish()] == [b"abc"]


def test_file_hash_of_streamed_chunks() -> None:
    assert str(file_hash_of(_stream(XOF_1M, [12345, 500000], DEFAULT_CHUNKING))) == (
        "558c53f099120c7a0ea92b65757381a8d085bd177e957bab2fbe7312c8b185af")


# ---------------------------------------------------------------- backends and bad input

def test_native_backend_is_built() -> None:
    # pyproject builds xetfs.core._gearhash; losing it silently would cost ~10x throughput.
    assert chunking.BACKEND == "native"
    assert chunking._gearhash.table() == GEAR_TABLE


@pytest.mark.skipif("native" not in SCANNERS, reason="native extension not built")
def test_native_scanner_in_threads() -> None:
    data = XOF_3M
    results: list[list[int]] = []
    threads = [threading.Thread(target=lambda: results.append(chunk_boundaries(data))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [XOF_3M_BOUNDARIES] * 3


@pytest.mark.skipif("native" not in SCANNERS, reason="native extension not built")
def test_native_rejects_bad_state() -> None:
    with pytest.raises(ValueError):
        chunking._gearhash.scan(b"abc", 0, 131072, 8192, 131072, DEFAULT_CHUNKING.mask)
    with pytest.raises(TypeError):
        chunking._gearhash.scan("text", 0, 0, 8192, 131072, DEFAULT_CHUNKING.mask)


def test_bad_params_and_backend() -> None:
    with pytest.raises(ValueError):
        Chunker(ChunkingParams(target_chunk_size=1024, min_chunk_size=4096, max_chunk_size=2048))
    with pytest.raises(ValueError):
        Chunker(ChunkingParams(target_chunk_size=1024, min_chunk_size=0, max_chunk_size=2048))
    with pytest.raises(ValueError):
        chunk_boundaries(b"x", backend="nope")


def test_non_byte_buffers_are_viewed_as_bytes() -> None:
    import numpy as np

    arr = np.frombuffer(XOF_1M, dtype=np.float32)
    assert chunk_boundaries(arr) == XOF_1M_BOUNDARIES
    assert chunk_boundaries(memoryview(XOF_1M).cast("I")) == XOF_1M_BOUNDARIES
