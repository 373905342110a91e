"""Xorb chunk records, compression schemes, builder, footer and validation (docs/protocol.md, "Xorbs",
"Test vectors")."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xetfs.core.chunking import Chunk, chunk_data
from xetfs.core.hashing import MerkleHash, chunk_hash, xorb_hash
from xetfs.core.compression import CompressionScheme, bg4_join, bg4_split, choose_scheme
from xetfs.core.xorb import (
    CHUNK_HEADER_BYTES,
    ChunkRecord,
    XorbBuilder,
    built_from_chunks,
    decode_chunks,
    encode_chunk,
    parse_chunk_records,
    split_complete_records,
    validate_xorb,
)
from xetfs.core.xorb_footer import XorbFooter, parse_xorb_footer, serialize_xorb_footer
from xetfs.errors import FormatError, IntegrityError
from xetfs.core.params import XorbParams

HELLO = b"Hello, World!"
HELLO_BODY = bytes.fromhex("000d0000000d000048656c6c6f2c20576f726c6421")
HELLO_HASH = "45143e5337d3e15599eb0f1370a9ee88e5114a633b3dd960ee673dbc191bf089"
SETTINGS = settings(max_examples=60, deadline=None)


def mk(data: bytes) -> Chunk:
    return Chunk(chunk_hash(data), data)


def rng_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def float32_bytes(n_values: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).standard_normal(n_values).astype(np.float32).tobytes()


def text_bytes(n_lines: int) -> bytes:
    return b"".join(b"The quick brown fox %d jumps over the lazy dog.\n" % i for i in range(n_lines))


# ---------------------------------------------------------------- golden vectors

def test_hello_world_xorb_body_is_byte_exact() -> None:
    x = built_from_chunks([mk(HELLO)])
    assert x.data == HELLO_BODY
    assert str(x.hash) == HELLO_HASH
    assert x.chunk_offsets == (0, len(HELLO_BODY))
    assert decode_chunks(HELLO_BODY) == [HELLO]
    assert validate_xorb(HELLO_BODY, MerkleHash.from_hex(HELLO_HASH)) == x


def test_observed_raw_headers() -> None:
    big, small = rng_bytes(4096, 1), rng_bytes(16, 2)
    assert encode_chunk(big)[:8] == bytes.fromhex("0000100000001000")
    x = built_from_chunks([mk(big), mk(small)])
    assert len(x.data) == 4128 == (8 + 4096) + (8 + 16)
    assert x.chunk_offsets == (0, 4104, 4128)
    assert x.hash == xorb_hash([(chunk_hash(big), 4096), (chunk_hash(small), 16)])


def test_lz4_payload_is_a_frame() -> None:
    record = encode_chunk(text_bytes(200), CompressionScheme.LZ4)
    assert record[4] == CompressionScheme.LZ4
    assert record[8:12] == bytes.fromhex("04224d18")


# ---------------------------------------------------------------- schemes

@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 4095, 4096, 4097, 4098, 4099])
def test_bg4_roundtrip_every_remainder(n: int) -> None:
    data = rng_bytes(n, n)
    grouped = bg4_split(data)
    assert grouped == data[0::4] + data[1::4] + data[2::4] + data[3::4]
    assert bg4_join(grouped) == data
    record = encode_chunk(data, CompressionScheme.BG4_LZ4)
    assert decode_chunks(record) == [data]


@given(st.binary(max_size=3000))
@SETTINGS
def test_bg4_roundtrip_property(data: bytes) -> None:
    assert bg4_join(bg4_split(data)) == data


@pytest.mark.parametrize("scheme", list(CompressionScheme) + [None])
@pytest.mark.parametrize("kind", ["random", "text", "float32", "zeros"])
def test_every_scheme_roundtrips(scheme: CompressionScheme | None, kind: str) -> None:
    data = {"random": rng_bytes(70000), "text": text_bytes(1500)[:70001],
            "float32": float32_bytes(17000)[:68003], "zeros": bytes(131072)}[kind]
    record = encode_chunk(data, scheme)
    (parsed,) = parse_chunk_records(record)
    assert parsed.uncompressed_size == len(data) and parsed.end == len(record)
    assert parsed.compressed_size <= len(data)  # NONE whenever compression does not shrink
    assert decode_chunks(record) == [data]


def test_auto_choice_per_kind() -> None:
    assert choose_scheme(rng_bytes(65536)) == CompressionScheme.NONE
    assert choose_scheme(text_bytes(1400)) == CompressionScheme.LZ4
    assert choose_scheme(float32_bytes(16384)) == CompressionScheme.BG4_LZ4
    assert encode_chunk(rng_bytes(65536))[4] == CompressionScheme.NONE
    f32 = float32_bytes(16384, 3)
    assert encode_chunk(f32)[4] == CompressionScheme.BG4_LZ4
    assert len(encode_chunk(f32)) < len(f32)


def test_incompressible_forced_scheme_stored_raw() -> None:
    data = rng_bytes(1000)
    for scheme in CompressionScheme:
        assert encode_chunk(data, scheme) == bytes([0]) + (1000).to_bytes(3, "little") + b"\0" + (1000).to_bytes(
            3, "little") + data


# ---------------------------------------------------------------- builder

def test_builder_respects_params() -> None:
    params = XorbParams.tiny()  # 16 KiB, 64 chunks
    b = XorbBuilder(params)
    assert b.can_add(16 * 1024) and not b.can_add(16 * 1024 + 1)
    assert b.add(mk(bytes(10000))) == 0
    assert not b.can_add(6385) and b.can_add(6384)
    with pytest.raises(ValueError):
        b.add(mk(bytes(6385)))
    assert len(b) == 1
    counted = XorbBuilder(XorbParams(max_xorb_bytes=1 << 20, max_xorb_chunks=3))
    for i in range(3):
        assert counted.add(mk(bytes([i]))) == i
    assert not counted.can_add(1)
    with pytest.raises(ValueError):
        XorbBuilder().finish()


def test_builder_offsets_match_parsed_records() -> None:
    data = rng_bytes(50000, 5) + text_bytes(3000) + float32_bytes(30000)
    chunks = chunk_data(data)
    assert len(chunks) > 3
    x = built_from_chunks(chunks)
    records = parse_chunk_records(x.data)
    assert x.chunk_offsets == tuple(r.offset for r in records) + (len(x.data),)
    assert x.chunk_sizes == tuple(c.size for c in chunks)
    assert x.chunk_hashes == tuple(c.hash for c in chunks)
    assert b"".join(decode_chunks(x.data)) == data
    assert {r.scheme for r in records} == set(CompressionScheme)
    # any byte range of consecutive records decodes on its own (what a reader fetches)
    for i in range(len(chunks)):
        for j in range(i + 1, len(chunks) + 1):
            assert decode_chunks(x.data[x.chunk_offsets[i]:x.chunk_offsets[j]]) == [c.data for c in chunks[i:j]]
    assert validate_xorb(x.data, x.hash) == x


chunk_lists = st.lists(st.one_of(st.binary(min_size=1, max_size=3000),
                                 st.builds(lambda n, b: b * n, st.integers(1, 3000), st.binary(min_size=1, max_size=4))),
                       min_size=1, max_size=6)


@given(chunk_lists, st.sampled_from([None, *CompressionScheme]))
@SETTINGS
def test_xorb_roundtrip_property(datas: list[bytes], scheme: CompressionScheme | None) -> None:
    x = built_from_chunks([mk(d) for d in datas], compression=scheme)
    assert decode_chunks(x.data) == datas
    assert validate_xorb(x.data, x.hash) == x
    with_footer = x.data + serialize_xorb_footer(XorbFooter.from_built(x))
    assert validate_xorb(with_footer, x.hash) == x
    assert decode_chunks(with_footer) == datas


# ---------------------------------------------------------------- footer

def test_footer_layout_and_roundtrip() -> None:
    x = built_from_chunks([mk(HELLO), mk(text_bytes(300))])
    footer = XorbFooter.from_built(x)
    raw = serialize_xorb_footer(footer)
    assert raw[:8] == b"XETBLOB\x01" and int.from_bytes(raw[-4:], "little") == len(raw) - 4
    assert len(raw) - 4 == 92 + 40 * 2
    assert parse_xorb_footer(raw) == footer
    assert footer.chunk_boundary_offsets == x.chunk_offsets[1:]
    assert footer.unpacked_chunk_offsets == (13, 13 + len(text_bytes(300)))
    empty = serialize_xorb_footer(XorbFooter(MerkleHash(), (), (), ()))
    assert len(empty) == 92 + 4


def test_footer_v0_parses() -> None:
    x = built_from_chunks([mk(HELLO)])
    body = (b"XETBLOB\x00" + bytes(x.hash) + (1).to_bytes(4, "little") + len(x.data).to_bytes(4, "little")
            + bytes(x.chunk_hashes[0]) + bytes(16))
    raw = body + len(body).to_bytes(4, "little")
    footer = parse_xorb_footer(raw)
    assert footer.version == 0 and footer.unpacked_chunk_offsets is None
    assert validate_xorb(x.data + raw, x.hash) == x


def test_footer_mismatch_is_detected() -> None:
    x = built_from_chunks([mk(HELLO), mk(b"second chunk")])
    other = built_from_chunks([mk(HELLO), mk(b"other chunk!")])
    with pytest.raises(IntegrityError):
        validate_xorb(x.data + serialize_xorb_footer(XorbFooter.from_built(other)), None)
    with pytest.raises(FormatError):
        validate_xorb(x.data + b"XETBLOB\x01garbage", None)


# ---------------------------------------------------------------- corruption

def test_bad_headers() -> None:
    record = bytearray(HELLO_BODY)
    for index, value in [(0, 1), (4, 3), (4, 99), (1, 12)]:
        bad = bytearray(record)
        bad[index] = value
        with pytest.raises(FormatError):
            decode_chunks(bytes(bad))
    too_big = bytes([0]) + (300000).to_bytes(3, "little") + b"\1" + (1000).to_bytes(3, "little")
    with pytest.raises(FormatError):
        parse_chunk_records(too_big + bytes(300000))
    lz4_wrong_size = bytearray(encode_chunk(text_bytes(100), CompressionScheme.LZ4))
    lz4_wrong_size[5] ^= 1
    with pytest.raises(FormatError):
        decode_chunks(bytes(lz4_wrong_size))
    with pytest.raises(FormatError):
        validate_xorb(b"", None)
    with pytest.raises(IntegrityError):
        validate_xorb(HELLO_BODY, MerkleHash(bytes(32)))
    assert parse_chunk_records(HELLO_BODY) == [ChunkRecord(0, 13, CompressionScheme.NONE, 13)]


def _sample_xorb() -> tuple[bytes, MerkleHash, list[bytes]]:
    datas = [text_bytes(40), rng_bytes(300, 9), float32_bytes(100), HELLO]
    schemes = [CompressionScheme.LZ4, CompressionScheme.NONE, CompressionScheme.BG4_LZ4, None]
    records = [encode_chunk(d, s) for d, s in zip(datas, schemes)]
    return b"".join(records), xorb_hash([(chunk_hash(d), len(d)) for d in datas]), datas


SAMPLE, SAMPLE_HASH, SAMPLE_CHUNKS = _sample_xorb()


def _validates_or_rejects(data: bytes) -> None:
    try:
        built = validate_xorb(data, SAMPLE_HASH)
    except (FormatError, IntegrityError):
        return
    assert built.hash == SAMPLE_HASH and decode_chunks(data) == SAMPLE_CHUNKS


@given(st.integers(0, len(SAMPLE) - 1))
@SETTINGS
def test_truncation_is_rejected(cut: int) -> None:
    with pytest.raises((FormatError, IntegrityError)):
        validate_xorb(SAMPLE[:cut], SAMPLE_HASH)
    try:
        decode_chunks(SAMPLE[:cut])
    except FormatError:
        pass


@given(st.integers(0, 8 * len(SAMPLE) - 1))
@settings(max_examples=150, deadline=None)
def test_bit_flip_is_rejected_or_harmless(bit: int) -> None:
    data = bytearray(SAMPLE)
    data[bit // 8] ^= 1 << (bit % 8)
    _validates_or_rejects(bytes(data))
    try:
        decode_chunks(bytes(data))
    except FormatError:
        pass


@given(st.binary(max_size=400), st.binary(max_size=64))
@SETTINGS
def test_garbage_raises_only_format_errors(garbage: bytes, suffix: bytes) -> None:
    for data in (garbage, bytes([0]) + garbage, SAMPLE + garbage, SAMPLE + b"XETBLOB" + suffix):
        try:
            decode_chunks(data)
        except FormatError:
            pass
        try:
            validate_xorb(data, None)
        except (FormatError, IntegrityError):
            pass
        try:
            parse_xorb_footer(data)
        except FormatError:
            pass


@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=6), st.data())
@settings(max_examples=60, deadline=None)
def test_split_complete_records_at_every_cut(datas: list[bytes], data: st.DataObject) -> None:
    """Any prefix of a record stream splits into exactly the records wholly inside it + the cut offset."""
    body = b"".join(encode_chunk(d, CompressionScheme.LZ4 if i % 2 else None) for i, d in enumerate(datas))
    whole = parse_chunk_records(body)
    cut = data.draw(st.integers(0, len(body)))
    records, rest = split_complete_records(memoryview(body)[:cut])
    assert records == [r for r in whole if r.end <= cut]
    assert rest == (records[-1].end if records else 0)
    assert rest == cut or rest < cut < rest + CHUNK_HEADER_BYTES + whole[len(records)].compressed_size


def test_split_complete_records_rejects_a_bad_header_and_stops_at_a_footer() -> None:
    body = encode_chunk(b"abc" * 100) + encode_chunk(b"xyz" * 100)
    first = parse_chunk_records(body)[0]
    bad = bytearray(body)
    bad[first.end] = 7   # the second record's version byte
    with pytest.raises(FormatError):
        split_complete_records(bad)
    assert split_complete_records(body + b"XETBLOB" + bytes(40))[1] == len(body)
    assert split_complete_records(body[:first.end + 5]) == ([first], first.end)   # a cut header is no error
