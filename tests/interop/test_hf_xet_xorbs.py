"""Xorbs and shards written by the real hf_xet (serverless ``local://`` CAS) read back with xetfs.core.

hf_xet stores xorbs as ``<dir>/xet/xorbs/xorbs/default.<xorb hash>`` (with the XETBLOB footer) and
shards (``.mdb``) under ``<dir>/xet/xorbs/shards/`` and ``<dir>/xet/shard-cache/`` (hf_xet's ``local://`` endpoint).
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from xetfs.core.chunking import chunk_data, file_hash_of
from xetfs.core.hashing import MerkleHash, verification_hash
from xetfs.core.shard import CHUNK_FLAG_GLOBAL_DEDUP, Shard, parse_shard, serialize_full_shard, serialize_upload_shard, xorb_info_from_built
from xetfs.core.compression import CompressionScheme
from xetfs.core.xorb import BuiltXorb, decode_chunks, parse_chunk_records, validate_xorb
from xetfs.testing.deps import required

hf_xet = required("hf_xet")


def _files(root: Path) -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    contents = {
        "random.bin": rng.bytes(300_000),
        "text.txt": b"".join(b"line %d: the quick brown fox jumps over the lazy dog\n" % i for i in range(9000)),
        "weights.f32": rng.standard_normal(120_000).astype(np.float32).tobytes(),
        "hello.txt": b"Hello, World!",
    }
    for name, data in contents.items():
        (root / name).write_bytes(data)
    return contents


def _upload(paths: list[Path], cas: Path) -> list:  # type: ignore[type-arg]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hf_xet.upload_files([str(p) for p in paths], f"local://{cas}", None, None, None, None)


@pytest.fixture
def uploaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    src, cas = tmp_path / "src", tmp_path / "cas"
    src.mkdir()
    cas.mkdir()
    contents = _files(src)
    results = _upload([src / n for n in contents], cas)
    infos = {n: r for n, r in zip(contents, results)}
    return contents, infos, cas


def _xorbs(cas: Path) -> dict[MerkleHash, bytes]:
    paths = [p for p in cas.rglob("default.*") if p.suffix != ".tagset"]
    return {MerkleHash.from_hex(p.name.split(".", 1)[1]): p.read_bytes() for p in paths}


def test_hf_xet_xorbs_decode_and_validate(uploaded) -> None:  # type: ignore[no-untyped-def]
    contents, infos, cas = uploaded
    xorbs = _xorbs(cas)
    assert xorbs, f"no xorbs under {cas}: {sorted(p.name for p in cas.rglob('*'))}"
    schemes: set[CompressionScheme] = set()
    for name_hash, data in xorbs.items():
        built = validate_xorb(data, name_hash)  # strips and checks the XETBLOB footer
        assert len(built.data) < len(data), "hf_xet's local CAS keeps the footer"
        records = parse_chunk_records(data)
        schemes |= {r.scheme for r in records}
        assert decode_chunks(data) == decode_chunks(built.data)
        # any byte range of consecutive records decodes on its own
        mid = len(records) // 2
        part = data[built.chunk_offsets[mid]:built.chunk_offsets[-1]]
        assert [len(c) for c in decode_chunks(part)] == list(built.chunk_sizes[mid:])
    assert schemes == set(CompressionScheme), schemes
    # our chunker + hashes agree with hf_xet's file ids
    for name, data in contents.items():
        assert str(file_hash_of(chunk_data(data))) == infos[name].hash


def _shards(cas: Path) -> list[tuple[Path, bytes, Shard]]:
    out = [(p, p.read_bytes()) for p in sorted(cas.rglob("*.mdb"))]
    assert out, f"no shards under {cas}"
    return [(p, raw, parse_shard(raw)) for p, raw in out]


def test_hf_xet_shards_reconstruct_files(uploaded) -> None:  # type: ignore[no-untyped-def]
    contents, infos, cas = uploaded
    built: dict[MerkleHash, BuiltXorb] = {h: validate_xorb(d, h) for h, d in _xorbs(cas).items()}
    chunks = {h: decode_chunks(d) for h, d in _xorbs(cas).items()}
    for _path, _raw, shard in _shards(cas):
        for x in shard.xorbs:
            # the local CAS marks global-dedup eligible chunks (flag bit31); uploads carry 0
            assert {c.flags for c in x.chunks} <= {0, CHUNK_FLAG_GLOBAL_DEDUP}
            unflagged = replace(x, chunks=tuple(replace(c, flags=0) for c in x.chunks))
            assert unflagged == xorb_info_from_built(built[x.xorb_hash])
        by_hash = {f.file_hash: f for f in shard.files}
        for name, data in contents.items():
            f = by_hash[MerkleHash.from_hex(infos[name].hash)]
            out = b"".join(b"".join(chunks[t.xorb_hash][t.chunk_start:t.chunk_end]) for t in f.terms)
            assert out == data, name
            assert f.size == len(data)
            assert f.sha256 is not None and str(f.sha256) == hashlib.sha256(data).hexdigest() == infos[name].sha256
            assert f.verification == tuple(
                verification_hash(built[t.xorb_hash].chunk_hashes[t.chunk_start:t.chunk_end]) for t in f.terms)


def test_hf_xet_full_shard_reserialized_byte_exact(uploaded) -> None:  # type: ignore[no-untyped-def]
    _contents, _infos, cas = uploaded
    with_tables = 0
    for path, raw, shard in _shards(cas):
        ft = shard.footer
        assert ft is not None, f"{path.name}: hf_xet's local shards carry a footer"
        # the upload body hf_xet derives from a full shard: cut at file_lookup_offset, footer_size := 0
        assert serialize_upload_shard(shard) == raw[:40] + bytes(8) + raw[48:ft.file_lookup_offset]
        if ft.chunk_lookup_num_entry:
            with_tables += 1
            again = serialize_full_shard(shard, hmac_key=ft.hmac_key, creation_timestamp=ft.creation_timestamp,
                                         key_expiry=ft.key_expiry)
            assert again == raw, path.name
    assert with_tables >= 1
