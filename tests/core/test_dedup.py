"""DedupSession (docs/protocol.md, "Deduplication"): packing, session/known/keyed dedup, and that every file
reconstructs exactly."""
from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xetfs.core.chunking import Chunk, chunk_data, file_hash_of
from xetfs.core.dedup import DedupSession, layout_shard
from xetfs.core.hashing import ZERO_HASH, MerkleHash, chunk_hash, hmac_hash, verification_hash
from xetfs.core.reconstruction import assemble, decode_fetched, plan_read, plan_reconstruction
from xetfs.core.shard import FileInfo, Shard, XorbChunkEntry, XorbInfo, parse_shard, serialize_full_shard, \
    serialize_upload_shard
from xetfs.core.xorb import BuiltXorb, validate_xorb
from xetfs.errors import ValidationError
from xetfs.core.params import ChunkingParams, XorbParams

CHUNKING = ChunkingParams.tiny()
XORBS = XorbParams.tiny()


def rand_bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


class Upload:
    """One session over some files; keeps the xorbs, the parsed shard and the per-file results."""

    def __init__(self, files: list[bytes], known: Sequence[Shard] = (), feed_sizes: int = 3, **kw: object) -> None:
        self.session = DedupSession(XORBS, **kw)  # type: ignore[arg-type]
        for shard in known:
            self.session.add_known_shard(shard)
        self.xorbs: list[BuiltXorb] = []
        self.file_hashes: list[MerkleHash] = []
        for data in files:
            chunks = chunk_data(data, CHUNKING)
            fid = self.session.start_file()
            step = max(1, len(chunks) // feed_sizes)
            for i in range(0, len(chunks), step):
                self.xorbs += self.session.add_chunks(fid, chunks[i:i + step])
            self.file_hashes.append(self.session.finish_file(fid, hashlib.sha256(data).digest()))
            assert self.file_hashes[-1] == file_hash_of(chunks)
        last, shard = self.session.finish()
        self.xorbs += last
        self.shard = parse_shard(serialize_upload_shard(shard))
        assert self.shard.files == shard.files and self.shard.xorbs == shard.xorbs
        self.files = {f.file_hash: f for f in self.shard.files}


def reconstruct(f: FileInfo, xorbs: dict[MerkleHash, BuiltXorb]) -> bytes:
    for t, v in zip(f.terms, f.verification or ()):
        assert v == verification_hash(xorbs[t.xorb_hash].chunk_hashes[t.chunk_start:t.chunk_end])
    assert f.verification is not None and len(f.verification) == len(f.terms)
    r = plan_reconstruction(f.terms, None, lambda h: xorbs[h].chunk_offsets, lambda h: xorbs[h].chunk_hashes)
    plan = plan_read(r)
    decoded = {fr: decode_fetched(fr, xorbs[fr.xorb_hash].data[fr.byte_start:fr.byte_end + 1], XORBS)
               for fr in plan.fetches}
    return assemble(plan, decoded)


def check_upload(up: Upload, files: list[bytes], *earlier: Upload) -> dict[MerkleHash, BuiltXorb]:
    xorbs = {x.hash: x for u in (*earlier, up) for x in u.xorbs}
    assert {x.xorb_hash for x in up.shard.xorbs} == {x.hash for x in up.xorbs}, "every new xorb is listed"
    for x in up.xorbs:
        assert validate_xorb(x.data, x.hash, XORBS).chunk_hashes == x.chunk_hashes
        assert sum(x.chunk_sizes) <= XORBS.max_xorb_bytes and len(x.chunk_sizes) <= XORBS.max_xorb_chunks
    for data, fh in zip(files, up.file_hashes):
        f = up.files[fh]
        assert str(f.sha256) == hashlib.sha256(data).hexdigest()
        assert reconstruct(f, xorbs) == data
        for a, b in zip(f.terms, f.terms[1:]):
            assert not (a.xorb_hash == b.xorb_hash and a.chunk_end == b.chunk_start), "adjacent runs merged"
    return xorbs


# ------------------------------------------------------------------------------------------------ examples


def test_files_span_several_xorbs_and_terms() -> None:
    shared = rand_bytes(1, 20_000)
    files = [rand_bytes(2, 30_000), shared + rand_bytes(3, 9_000), rand_bytes(4, 5_000) + shared, b"", b"tiny"]
    up = Upload(files)
    check_upload(up, files)
    assert len(up.xorbs) >= 4
    assert max(len(f.terms) for f in up.files.values()) >= 2
    assert up.files[ZERO_HASH].terms == () and up.files[ZERO_HASH].verification == ()
    total = sum(map(len, files))
    assert up.session.new_bytes + up.session.deduped_bytes == total
    assert up.session.deduped_bytes >= 15_000   # most of the second copy of `shared`


def test_same_file_twice_makes_no_new_chunks() -> None:
    data = rand_bytes(5, 40_000)
    up = Upload([data, data])
    check_upload(up, [data, data])
    assert up.session.new_bytes == len(data) and up.session.deduped_bytes == len(data)
    assert up.session.stats.new_chunks == len(chunk_data(data, CHUNKING))
    assert len(up.shard.files) == 1 and up.file_hashes[0] == up.file_hashes[1]


def test_repeated_content_inside_one_file() -> None:
    block = rand_bytes(6, 6_000)
    data = block * 4 + rand_bytes(7, 3_000)
    up = Upload([data])
    check_upload(up, [data])
    assert up.session.new_bytes < len(data) // 2


def test_prefix_of_a_known_shard_is_referenced() -> None:
    base = rand_bytes(8, 40_000)
    first = Upload([base])
    grown = base + rand_bytes(9, 3_000)
    second = Upload([grown], known=[first.shard])
    check_upload(second, [grown], first)
    old = {x.hash for x in first.xorbs}
    terms = second.files[second.file_hashes[0]].terms
    assert terms[0].xorb_hash in old and terms[0].chunk_start == 0
    assert second.session.deduped_bytes >= len(base) - 2 * CHUNKING.max_chunk_size
    assert second.session.new_bytes <= len(grown) - second.session.deduped_bytes


def test_keyed_shard_dedup() -> None:
    """A global-dedup answer: full shard, chunk hashes keyed with the footer's hmac_key."""
    base = rand_bytes(10, 30_000)
    first = Upload([base])
    key = rand_bytes(11, 32)
    keyed = parse_shard(serialize_full_shard(Shard((), first.shard.xorbs), hmac_key=key,
                                             creation_timestamp=1, key_expiry=2))
    assert keyed.footer is not None and bytes(keyed.footer.hmac_key) == key
    plain = {c.chunk_hash for x in first.shard.xorbs for c in x.chunks}
    assert not plain & {c.chunk_hash for x in keyed.xorbs for c in x.chunks}
    data = rand_bytes(12, 2_000) + base
    second = Upload([data], known=[keyed])
    check_upload(second, [data], first)
    assert second.session.deduped_bytes >= len(base) - 2 * CHUNKING.max_chunk_size
    # The same shard with its key stripped matches nothing: the keyed hashes are not the chunk hashes.
    unkeyed = Shard((), keyed.xorbs, None)
    third = Upload([data], known=[unkeyed])
    assert third.session.deduped_bytes == 0


@pytest.mark.parametrize("key", [None, bytes(range(1, 33))])
def test_terms_continue_in_the_xorb_they_started_in(key: bytes | None) -> None:
    """Chunk y is listed in two known xorbs; after x (only in the second) the term continues there."""
    x, y = Chunk(chunk_hash(b"x" * 50), b"x" * 50), Chunk(chunk_hash(b"y" * 60), b"y" * 60)

    def info(chunks: list[Chunk], tag: int) -> XorbInfo:
        entries, start = [], 0
        for c in chunks:
            entries.append(XorbChunkEntry(hmac_hash(c.hash, key) if key else c.hash, start, c.size))
            start += c.size
        return XorbInfo(MerkleHash(bytes([tag]) * 32), tuple(entries), start)

    footer = parse_shard(serialize_full_shard(Shard((), ()), hmac_key=key or bytes(32), creation_timestamp=0,
                                              key_expiry=0)).footer
    session = DedupSession(XORBS)
    session.add_known_shard(Shard((), (info([y], 1), info([x, y], 2)), footer))
    fid = session.start_file()
    session.add_chunks(fid, [x, y])
    session.finish_file(fid, None)
    _, shard = session.finish()
    assert [(t.xorb_hash[0], t.chunk_start, t.chunk_end) for t in shard.files[0].terms] == [(2, 0, 2)]
    assert shard.xorbs == () and session.new_bytes == 0


def test_known_xorb_with_other_chunk_size_is_not_used() -> None:
    data = rand_bytes(13, 3_000)
    chunks = chunk_data(data, CHUNKING)
    entries = tuple(XorbChunkEntry(c.hash, 0, c.size + 1) for c in chunks)
    session = DedupSession(XORBS)
    session.add_known_xorb(XorbInfo(MerkleHash(bytes(range(32))), entries, sum(e.unpacked_bytes for e in entries)))
    fid = session.start_file()
    session.add_chunks(fid, chunks)
    session.finish_file(fid, None)
    _, shard = session.finish()
    assert session.deduped_bytes == 0 and shard.files[0].sha256 is None


def test_dedup_queries() -> None:
    data = rand_bytes(14, 20_000)
    chunks = chunk_data(data, CHUNKING)
    eligible = Chunk(MerkleHash(bytes(32)), b"zero hash: % 1024 == 0")
    session = DedupSession(XORBS)
    assert session.dedup_queries(chunks, file_start=True)[0] == chunks[0].hash
    assert chunks[0].hash not in session.dedup_queries(chunks, file_start=False)
    assert eligible.hash in session.dedup_queries([chunks[1], eligible], file_start=False)
    assert all(c.hash.modulo(1024) == 0 for c in chunks[1:] if c.hash in session.dedup_queries(chunks, False))
    fid = session.start_file()
    session.add_chunks(fid, chunks[:1])
    assert session.dedup_queries(chunks, file_start=True)[:1] != [chunks[0].hash], "known chunks are not asked"


def test_misuse() -> None:
    session = DedupSession(XORBS)
    fid = session.start_file()
    with pytest.raises(ValidationError):
        session.finish()
    session.finish_file(fid, None)
    with pytest.raises(ValidationError):
        session.add_chunks(fid, [])
    big = b"x" * (XORBS.max_xorb_bytes + 1)
    with pytest.raises(ValidationError):
        session.add_chunks(session.start_file(), [Chunk(chunk_hash(big), big)])


# ------------------------------------------------------------------------------------------------ property


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.integers(0, 5), max_size=4), min_size=1, max_size=4), st.integers(1, 5),
       st.integers(0, 2**16))
def test_every_file_reconstructs(plan: list[list[int]], feed: int, seed: int) -> None:
    """Files built from a small pool of segments (shared, repeated, reordered) round-trip through the shard."""
    pool = [rand_bytes(seed + i, 500 + (seed * (i + 1)) % 9_000) for i in range(6)]
    files = [b"".join(pool[i] for i in picks) for picks in plan]
    up = Upload(files, feed_sizes=feed)
    check_upload(up, files)
    distinct = {c.hash: c.size for data in files for c in chunk_data(data, CHUNKING)}
    assert up.session.new_bytes == sum(distinct.values()), "each distinct chunk is stored once"
    assert up.session.new_bytes + up.session.deduped_bytes == sum(map(len, files))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.integers(0, 5), max_size=4), min_size=1, max_size=3),
       st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=4), min_size=1, max_size=3), st.integers(0, 2**16))
def test_a_files_layout_is_what_chunking_it_gives_and_dedups_it_whole(seeded: list[list[int]],
                                                                         plan: list[list[int]], seed: int) -> None:
    """``file_layouts`` (``keep_layouts``) of files that partly reuse an earlier upload's xorbs: each is the
    layout that chunking the file's bytes against its terms gives (what ``write.basecands`` learns by reading
    it), and a later session knowing only that layout stores none of the file's bytes again."""
    pool = [rand_bytes(seed + i, 500 + (seed * (i + 1)) % 9_000) for i in range(6)]
    first = Upload([b"".join(pool[i] for i in picks) for picks in seeded])
    files = [b"".join(pool[i] for i in picks) for picks in plan]
    up = Upload(files, known=[first.shard], keep_layouts=True)
    xorbs = check_upload(up, files, first)
    layouts = up.session.file_layouts()
    assert set(layouts) == set(up.file_hashes) - {ZERO_HASH}
    for data, fh in zip(files, up.file_hashes):
        if fh == ZERO_HASH:
            continue
        leaves = [(c.hash, c.size) for c in chunk_data(data, CHUNKING)]
        assert layouts[fh] == layout_shard(up.files[fh].terms, leaves)
        again = Upload([data], known=[layouts[fh]])
        check_upload(again, [data], first, up)
        assert again.session.new_bytes == 0 and again.xorbs == []
        assert {t.xorb_hash for t in again.files[fh].terms} <= set(xorbs)
    assert Upload(files, known=[first.shard]).session.file_layouts() == {}, "only with keep_layouts"
