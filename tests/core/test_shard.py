"""Shard formats both ways: upload form, full form with lookup tables, keyed dedup form (docs/protocol.md, "Shards")."""
from __future__ import annotations

import hashlib
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xetfs.cli.main import main as cli_main
from xetfs.core.chunking import chunk_data, file_hash_of
from xetfs.core.hashing import ZERO_HASH, MerkleHash, hmac_hash, sha256_to_shard, verification_hash
from xetfs.core.shard import (
    FileInfo,
    FileTerm,
    Shard,
    XorbChunkEntry,
    XorbInfo,
    canonical,
    parse_shard,
    serialize_full_shard,
    serialize_upload_shard,
    upload_encoding_problem,
    xorb_info_from_built,
)
from xetfs.core.xorb import built_from_chunks
from xetfs.errors import FormatError

GOLDEN_HELLO = bytes.fromhex("".join("""
48465265706f4d6574614461746100556967456a7b815783a5bdd95ccdd14aa902000000000000000000000000000000
066dc88f1f082820412a905cb8ffac98b6a045ccffc349055771d132106e66ed000000c0010000000000000000000000
55e1d337533e144588eea970130feb9960d93d3b634a11e589f01b19bc3d67ee000000000d0000000000000001000000
a245384b710cd2cf3dd4479200bbddc9b3977ebc77631f211228148456f825a700000000000000000000000000000000
b0d52bbb2160fddfa5c39e80906267af4b0af7c781dd91316f988221368a682800000000000000000000000000000000
ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff00000000000000000000000000000000
55e1d337533e144588eea970130feb9960d93d3b634a11e589f01b19bc3d67ee00000000010000000d00000000000000
55e1d337533e144588eea970130feb9960d93d3b634a11e589f01b19bc3d67ee000000000d0000000000000000000000
ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff00000000000000000000000000000000
""".split()))
SETTINGS = settings(max_examples=50, deadline=None)
NOW, LATER = 1_700_000_000, 1_700_003_600


def shard_for_file(data: bytes) -> Shard:
    """What an uploader builds for one new file in one new xorb (one term)."""
    chunks = chunk_data(data)
    x = built_from_chunks(chunks)
    term = FileTerm(x.hash, 0, len(chunks), len(data))
    info = FileInfo(file_hash_of(chunks), (term,), (verification_hash(x.chunk_hashes),),
                    sha256_to_shard(hashlib.sha256(data).digest()))
    return Shard((info,), (xorb_info_from_built(x),))


def test_hello_world_shard_is_byte_exact() -> None:
    shard = shard_for_file(b"Hello, World!")
    assert serialize_upload_shard(shard) == GOLDEN_HELLO
    assert len(GOLDEN_HELLO) == 432
    assert parse_shard(GOLDEN_HELLO) == shard
    (f,) = shard.files
    assert str(f.file_hash) == "2028081f8fc86d0698acffb85c902a410549c3ffcc45a0b6ed666e1032d17157"
    assert str(f.verification[0]) == "cfd20c714b3845a2c9ddbb009247d43d211f6377bc7e97b3a725f85684142812"
    assert str(f.sha256) == hashlib.sha256(b"Hello, World!").hexdigest()
    assert f.size == 13


def test_empty_file_shard_is_240_bytes() -> None:
    info = FileInfo(ZERO_HASH, (), (), sha256_to_shard(hashlib.sha256(b"").digest()))
    raw = serialize_upload_shard(Shard((info,), ()))
    assert len(raw) == 240
    assert struct.unpack_from("<I", raw, 48 + 32)[0] == 0xC0000000
    assert parse_shard(raw).files == (info,)


def test_upload_shard_sorts_like_hf_xet() -> None:
    a, b = shard_for_file(b"first file" * 50), shard_for_file(b"second file" * 70)
    merged = Shard(a.files + b.files + a.files, b.xorbs + a.xorbs)
    parsed = parse_shard(serialize_upload_shard(merged))
    assert [str(f.file_hash) for f in parsed.files] == sorted({str(f.file_hash) for f in merged.files})
    assert [str(x.xorb_hash) for x in parsed.xorbs] == sorted(str(x.xorb_hash) for x in merged.xorbs)


def test_older_upload_forms_parse() -> None:
    shard = parse_shard(GOLDEN_HELLO)
    footer_200_no_footer = GOLDEN_HELLO[:40] + struct.pack("<Q", 200) + GOLDEN_HELLO[48:]
    assert parse_shard(footer_200_no_footer) == shard
    assert parse_shard(GOLDEN_HELLO + b"trailing junk after the xorb bookend") == shard


def test_full_shard_tables_and_footer() -> None:
    a, b = shard_for_file(b"alpha" * 5000), shard_for_file(bytes(range(256)) * 400)
    shard = Shard(a.files + b.files, a.xorbs + b.xorbs)
    raw = serialize_full_shard(shard, creation_timestamp=NOW, key_expiry=LATER)
    assert struct.unpack_from("<Q", raw, 40)[0] == 200
    parsed = parse_shard(raw)
    ft = parsed.footer
    assert ft is not None and parsed.files == canonical(shard).files and parsed.xorbs == canonical(shard).xorbs
    assert (ft.version, ft.file_info_offset, ft.footer_offset) == (1, 48, len(raw) - 200)
    assert (ft.creation_timestamp, ft.key_expiry, ft.hmac_key) == (NOW, LATER, ZERO_HASH)
    assert ft.materialized_bytes == 5000 * 5 + 256 * 400
    assert ft.stored_bytes == sum(x.num_bytes_in_xorb for x in shard.xorbs)
    n_chunks = sum(len(x.chunks) for x in shard.xorbs)
    assert (ft.file_lookup_num_entry, ft.xorb_lookup_num_entry, ft.chunk_lookup_num_entry) == (2, 2, n_chunks)
    # every chunk lookup entry points at the record holding that (truncated) chunk hash
    entries = [struct.unpack_from("<QII", raw, ft.chunk_lookup_offset + 16 * i) for i in range(n_chunks)]
    assert entries == sorted(entries)
    for key, xorb_index, chunk_index in entries:
        header_at = ft.xorb_info_offset + 48 * xorb_index
        record = raw[header_at + 48 * (1 + chunk_index):][:32]
        assert MerkleHash(record).truncated() == key
    files = [struct.unpack_from("<QI", raw, ft.file_lookup_offset + 12 * i) for i in range(2)]
    for key, index in files:
        assert MerkleHash(raw[48 + 48 * index:][:32]).truncated() == key
    # cutting at file_lookup_offset + footer_size 0 is exactly the upload form
    assert raw[:40] + bytes(8) + raw[48:ft.file_lookup_offset] == serialize_upload_shard(shard)


def test_keyed_dedup_shard() -> None:
    key = bytes(range(1, 33))
    shard = shard_for_file(b"keyed" * 9000)
    dedup_form = Shard((), tuple(XorbInfo(x.xorb_hash, x.chunks, x.num_bytes_in_xorb, 12345) for x in shard.xorbs))
    raw = serialize_full_shard(dedup_form, hmac_key=key, creation_timestamp=NOW, key_expiry=LATER)
    parsed = parse_shard(raw)
    assert parsed.files == () and parsed.footer is not None and bytes(parsed.footer.hmac_key) == key
    (x,) = parsed.xorbs
    (orig,) = dedup_form.xorbs
    assert [c.chunk_hash for c in x.chunks] == [hmac_hash(c.chunk_hash, key) for c in orig.chunks]
    assert [(c.byte_range_start, c.unpacked_bytes) for c in x.chunks] == [
        (c.byte_range_start, c.unpacked_bytes) for c in orig.chunks]
    assert x.num_bytes_on_disk == 12345 == parsed.footer.stored_bytes_on_disk
    keys = [struct.unpack_from("<Q", raw, parsed.footer.chunk_lookup_offset + 16 * i)[0] for i in range(len(x.chunks))]
    assert keys == sorted(c.chunk_hash.truncated() for c in x.chunks)


# ---------------------------------------------------------------- properties

hashes = st.binary(min_size=32, max_size=32).map(MerkleHash)
u32 = st.integers(0, 2**32 - 1)
terms = st.builds(FileTerm, hashes, st.integers(0, 1000), st.integers(1, 1000), u32, u32).map(
    lambda t: FileTerm(t.xorb_hash, t.chunk_start, t.chunk_start + t.chunk_end, t.unpacked_bytes, t.flags))


@st.composite
def file_infos(draw: st.DrawFn) -> FileInfo:
    ts = tuple(draw(st.lists(terms, max_size=4)))
    verification = draw(st.one_of(st.none(), st.lists(hashes, min_size=len(ts), max_size=len(ts)).map(tuple)))
    return FileInfo(draw(hashes), ts, verification, draw(st.one_of(st.none(), hashes)))


xorb_infos = st.builds(XorbInfo, hashes, st.lists(st.builds(XorbChunkEntry, hashes, u32, u32, u32), max_size=5).map(
    tuple), u32, u32, u32)
shards = st.builds(Shard, st.lists(file_infos(), max_size=4).map(tuple), st.lists(xorb_infos, max_size=4).map(tuple))


@given(shards)
@SETTINGS
def test_upload_roundtrip_property(shard: Shard) -> None:
    assert parse_shard(serialize_upload_shard(shard)) == canonical(shard)
    assert serialize_upload_shard(canonical(shard)) == serialize_upload_shard(shard)


@given(shards, st.one_of(st.just(bytes(32)), st.binary(min_size=32, max_size=32)))
@SETTINGS
def test_full_roundtrip_property(shard: Shard, key: bytes) -> None:
    parsed = parse_shard(serialize_full_shard(shard, hmac_key=key, creation_timestamp=NOW, key_expiry=LATER))
    want = canonical(shard)
    assert parsed.files == want.files
    if not any(key):
        assert parsed.xorbs == want.xorbs
        # re-serializing what was parsed reproduces the bytes
        again = serialize_full_shard(parsed, creation_timestamp=NOW, key_expiry=LATER)
        assert again == serialize_full_shard(shard, creation_timestamp=NOW, key_expiry=LATER)
    else:
        assert [len(x.chunks) for x in parsed.xorbs] == [len(x.chunks) for x in want.xorbs]


# ---------------------------------------------------------------- corruption

SAMPLE_FULL = serialize_full_shard(shard_for_file(b"sample" * 3000), creation_timestamp=NOW, key_expiry=LATER)


def _parses_or_rejects(data: bytes) -> None:
    try:
        parse_shard(data)
    except FormatError:
        pass


@given(st.integers(0, len(GOLDEN_HELLO) - 1))
@SETTINGS
def test_truncated_upload_shard_is_rejected(cut: int) -> None:
    with pytest.raises(FormatError):
        parse_shard(GOLDEN_HELLO[:cut])


@given(st.integers(0, len(SAMPLE_FULL) - 1))
@SETTINGS
def test_truncated_full_shard_only_format_errors(cut: int) -> None:
    _parses_or_rejects(SAMPLE_FULL[:cut])


@given(st.sampled_from([GOLDEN_HELLO, SAMPLE_FULL]), st.data())
@settings(max_examples=150, deadline=None)
def test_bit_flips_only_format_errors(raw: bytes, data: st.DataObject) -> None:
    bit = data.draw(st.integers(0, 8 * len(raw) - 1))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    _parses_or_rejects(bytes(flipped))


@given(st.binary(max_size=600))
@SETTINGS
def test_garbage_only_format_errors(garbage: bytes) -> None:
    for data in (garbage, GOLDEN_HELLO[:48] + garbage, GOLDEN_HELLO[:96] + garbage, SAMPLE_FULL[:-200] + garbage):
        _parses_or_rejects(data)


def test_specific_malformations() -> None:
    bad_version = GOLDEN_HELLO[:32] + struct.pack("<Q", 3) + GOLDEN_HELLO[40:]
    bad_footer_size = GOLDEN_HELLO[:40] + struct.pack("<Q", 7) + GOLDEN_HELLO[48:]
    huge_count = GOLDEN_HELLO[:48 + 36] + struct.pack("<I", 2**32 - 1) + GOLDEN_HELLO[48 + 40:]
    empty_term = GOLDEN_HELLO[:96 + 40] + struct.pack("<II", 1, 1) + GOLDEN_HELLO[96 + 48:]
    footer_v0 = SAMPLE_FULL[:-200] + bytes(8) + SAMPLE_FULL[-192:]
    for raw in (b"", b"HFRepo", bad_version, bad_footer_size, huge_count, empty_term, footer_v0, b"\0" * 432):
        with pytest.raises(FormatError):
            parse_shard(raw)


# ---------------------------------------------------------------- xetfs inspect

def test_inspect_cli(tmp_path, capsys) -> None:
    path = tmp_path / "hello.mdb"
    path.write_bytes(GOLDEN_HELLO)
    assert cli_main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "shard" and info["files"][0]["size_bytes"] == 13
    xorb = tmp_path / "default.45143e5337d3e15599eb0f1370a9ee88e5114a633b3dd960ee673dbc191bf089"
    xorb.write_bytes(bytes.fromhex("000d0000000d000048656c6c6f2c20576f726c6421"))
    assert cli_main(["inspect", str(xorb)]) == 0
    out = capsys.readouterr().out
    assert "matches file name" in out and "NONE" in out
    path.write_bytes(GOLDEN_HELLO[:100])
    assert cli_main(["inspect", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("xetfs: error:") and err.count("\n") == 1


def _problem(raw: bytes) -> str | None:
    return upload_encoding_problem(raw, parse_shard(raw))


def test_the_accepted_upload_encodings() -> None:
    assert _problem(GOLDEN_HELLO) is None
    assert _problem(GOLDEN_HELLO[:40] + struct.pack("<Q", 200) + GOLDEN_HELLO[48:]) is None
    shard = parse_shard(GOLDEN_HELLO)
    assert _problem(serialize_full_shard(shard, creation_timestamp=NOW, key_expiry=LATER)) is None


def _with(raw: bytes, pos: int, fmt: str, value: int) -> bytes:
    out = bytearray(raw)
    struct.pack_into(fmt, out, pos, value)
    return bytes(out)


def test_encodings_that_say_the_same_in_other_bytes_are_refused() -> None:
    a, b = shard_for_file(b"first file" * 50), shard_for_file(b"second file" * 70)
    merged = serialize_upload_shard(Shard(a.files + b.files, a.xorbs + b.xorbs))
    first, second = parse_shard(merged).files
    size_first = 48 * (1 + 2 * len(first.terms) + 1)
    swapped = merged[:48] + merged[48 + size_first:48 + size_first + 48 * (2 + 2 * len(second.terms))] \
        + merged[48:48 + size_first] + merged[48 + size_first + 48 * (2 + 2 * len(second.terms)):]
    assert parse_shard(swapped).files == (second, first)
    keyed = serialize_full_shard(parse_shard(GOLDEN_HELLO), hmac_key=b"k" * 32, creation_timestamp=NOW,
                                 key_expiry=LATER)
    bad = {
        "trailing bytes": GOLDEN_HELLO + b"trailing junk",
        "files out of order": swapped,
        "reserved u64 of a file header": _with(GOLDEN_HELLO, 48 + 40, "<Q", 1),
        "undefined file flag bit": _with(GOLDEN_HELLO, 48 + 32, "<I", 0xC0000001),
        "bookend tail": _with(GOLDEN_HELLO, len(GOLDEN_HELLO) - 8, "<Q", 5),
        "reserved u32 of a chunk entry": _with(GOLDEN_HELLO, len(GOLDEN_HELLO) - 48 - 4, "<I", 7),
        "keyed full shard": keyed,
        "partial footer": GOLDEN_HELLO[:40] + struct.pack("<Q", 200) + GOLDEN_HELLO[48:] + bytes(100),
    }
    for what, raw in bad.items():
        assert _problem(raw) is not None, what


@given(shards)
@SETTINGS
def test_every_serialized_upload_is_its_canonical_encoding(shard: Shard) -> None:
    raw = serialize_upload_shard(shard)
    assert upload_encoding_problem(raw, parse_shard(raw)) is None
