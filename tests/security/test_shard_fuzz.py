"""Class 4, shard fields (issue 12): 300 deterministic mutations of a real shard. Each mutated upload is refused
with a 4xx, or, if accepted, parses to exactly what the original does; none gets a 5xx, and the server ends
up holding only the original's files.

The shard comes from real data through the client's code (content-defined chunking, xorb building, shard
serialization): two files over three xorbs, with verification entries and sha256 metadata.
"""
from __future__ import annotations

import hashlib
import random
import sqlite3
import struct
from collections.abc import Callable

from xetfs.core.chunking import chunk_data, file_hash_of
from xetfs.core.hashing import sha256_to_shard, verification_hash
from xetfs.core.params import SHARD_HEADER_BYTES, SHARD_RECORD_BYTES, ChunkingParams
from xetfs.core.shard import (FileInfo, FileTerm, Shard, parse_shard, serialize_full_shard, serialize_upload_shard,
                              xorb_info_from_built)
from xetfs.core.xorb import BuiltXorb, built_from_chunks
from xetfs.errors import FormatError
from xetfs.testing.cas import cas_token
from xetfs.testing.server import ServerHandle, make_bytes

MUTATIONS = 300
SEED = 1212


def _real_shard() -> tuple[list[BuiltXorb], bytes]:
    """Two files: A over xorbs 0 and 1, B over part of xorb 1 and xorb 2."""
    a, b = make_bytes("random", 60_000, 41), make_bytes("float32", 50_000, 42)
    ca, cb = chunk_data(a, ChunkingParams.tiny()), chunk_data(b, ChunkingParams.tiny())
    half = len(ca) // 2
    xorbs = [built_from_chunks(ca[:half]), built_from_chunks(ca[half:] + cb[:3]), built_from_chunks(cb[3:])]

    def term(x: BuiltXorb, start: int, end: int) -> FileTerm:
        return FileTerm(x.hash, start, end, sum(x.chunk_sizes[start:end]))

    def info(chunks: list, terms: tuple[FileTerm, ...], data: bytes) -> FileInfo:  # type: ignore[type-arg]
        verification = tuple(verification_hash(next(x for x in xorbs if x.hash == t.xorb_hash)
                                               .chunk_hashes[t.chunk_start:t.chunk_end]) for t in terms)
        return FileInfo(file_hash_of(chunks), terms, verification, sha256_to_shard(hashlib.sha256(data).digest()))

    n1 = len(xorbs[1].chunk_hashes)
    files = (info(ca, (term(xorbs[0], 0, half), term(xorbs[1], 0, len(ca) - half)), a),
             info(cb, (term(xorbs[1], n1 - 3, n1), term(xorbs[2], 0, len(xorbs[2].chunk_hashes))), b))
    return xorbs, serialize_upload_shard(Shard(files, tuple(xorb_info_from_built(x) for x in xorbs)))


def _records(body: bytes) -> list[int]:
    return list(range(SHARD_HEADER_BYTES, len(body), SHARD_RECORD_BYTES))


def _mutators(body: bytes, rng: random.Random) -> list[Callable[[], bytes]]:
    """Kinds of mutation, each drawing its own position and value from ``rng``."""
    recs = _records(body)

    def flip() -> bytes:
        out = bytearray(body)
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)

    def random_byte() -> bytes:
        out = bytearray(body)
        out[rng.randrange(SHARD_HEADER_BYTES, len(out))] = rng.randrange(256)
        return bytes(out)

    def field() -> bytes:                 # one u32 of a record's fields (32..48) or a u64 of the header
        out = bytearray(body)
        if rng.random() < 0.1:
            pos, fmt = rng.choice([32, 40]), "<Q"
        else:
            pos, fmt = rng.choice(recs) + rng.choice([32, 36, 40, 44]), "<I"
        old = struct.unpack_from(fmt, out, pos)[0]
        top = 2 ** (8 * struct.calcsize(fmt)) - 1
        new = rng.choice([0, 1, old + 1, max(old - 1, 0), top, 1 << 31, 1 << 30, 200, rng.randrange(top)])
        struct.pack_into(fmt, out, pos, min(new, top))
        return bytes(out)

    def truncate() -> bytes:
        return body[:rng.randrange(len(body))]

    def extend() -> bytes:
        tail = rng.choice([bytes(rng.randrange(1, 300)), rng.randbytes(rng.randrange(1, 300)),
                           body[-SHARD_RECORD_BYTES:], body[rng.choice(recs):][:SHARD_RECORD_BYTES]])
        return body + tail

    def swap() -> bytes:
        i, j = sorted(rng.sample(recs, 2))
        r = SHARD_RECORD_BYTES
        return body[:i] + body[j:j + r] + body[i + r:j] + body[i:i + r] + body[j + r:]

    def duplicate() -> bytes:
        i = rng.choice(recs)
        return body[:i] + body[i:i + SHARD_RECORD_BYTES] + body[i:]

    def drop() -> bytes:
        i = rng.choice(recs)
        return body[:i] + body[i + SHARD_RECORD_BYTES:]

    def full_footer() -> bytes:           # a full shard: valid, or with one footer byte changed
        full = serialize_full_shard(parse_shard(body), creation_timestamp=rng.randrange(2 ** 32), key_expiry=0)
        if rng.random() < 0.2:
            return full
        out = bytearray(full)
        out[rng.randrange(len(body), len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)

    return [flip] * 8 + [random_byte] * 3 + [field] * 6 + [truncate] * 2 + [extend] * 2 + [swap, duplicate, drop] \
        + [full_footer]


def test_mutated_shards_are_refused_or_mean_the_same(server: ServerHandle) -> None:
    srv = server
    srv.create_repo("org/fuzz")
    tok = cas_token(srv, "org/fuzz")
    xorbs, body = _real_shard()
    for x in xorbs:
        assert srv.request("POST", f"/v1/xorbs/default/{x.hash}", x.data, token=tok)[0] == 200
    meaning = parse_shard(body)
    rng = random.Random(SEED)
    kinds = _mutators(body, rng)
    outcomes: dict[int, int] = {}
    tried = 0
    while tried < MUTATIONS:
        mutated = rng.choice(kinds)()
        if mutated == body:
            continue
        tried += 1
        status, _, answer = srv.request("POST", "/v1/shards", mutated, token=tok)
        outcomes[status] = outcomes.get(status, 0) + 1
        assert status < 500, (status, answer[:300])
        assert status == 200 or 400 <= status < 500, status
        if status == 200:
            try:
                parsed = parse_shard(mutated)
            except FormatError as exc:
                raise AssertionError(f"accepted a shard that does not parse: {exc}") from None
            assert parsed.files == meaning.files and parsed.xorbs == meaning.xorbs, f"accepted mutation #{tried}"
    assert srv.request("POST", "/v1/shards", body, token=tok)[0] == 200, "the original is still accepted"
    db = sqlite3.connect(srv.data_dir / "metadata.sqlite3")
    try:
        stored = {r[0] for r in db.execute("SELECT hash FROM files")}
    finally:
        db.close()
    assert stored == {str(f.file_hash) for f in meaning.files}, "only the original's files are registered"
    print(f"shard fuzzer outcomes by status: {dict(sorted(outcomes.items()))}")
