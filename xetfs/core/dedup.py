"""Deduplication and xorb packing for one upload session (docs/protocol.md, "Deduplication").

A ``DedupSession`` takes the chunks of many files (``start_file`` / ``add_chunks`` / ``finish_file``) and decides,
chunk by chunk, where its bytes will live:

1. *continuation*: the chunk equals the next chunk of the xorb the file's previous term points at, so that term
   grows by one (keeps terms long even when a chunk hash appears in several places);
2. *session dedup*: a chunk seen earlier in this session (any file, any xorb built or still open);
3. *known xorbs*: xorbs listed in shards added with ``add_known_shard`` (a previous version's shard, or a global
   dedup answer) or ``add_known_xorb``. A shard whose footer has a nonzero ``hmac_key`` lists keyed chunk
   hashes ``blake3(chunk_hash, key=hmac_key)``; a local chunk matches when its keyed hash is listed. A match also
   needs the listed size to equal the chunk's size (the term's ``unpacked_bytes`` comes from those sizes). A
   partial listing (size-0 placeholders for the chunks it does not know, ``xetfs.write.basecands``) merges
   with other listings of the same xorb;
4. otherwise the chunk is *new* and goes into the open ``XorbBuilder`` (a new xorb starts when the next
   new chunk would overflow ``XorbParams``); ``add_chunks`` returns the xorbs it completed, ready to upload.

Terms merge consecutive chunk indices of the same xorb. A term on a xorb still being built refers to it
by the xorb's sequence number in this session; every reference is resolved to a xorb hash in ``finish()``,
which returns the last xorbs and the upload shard: every file (sorted, deduplicated by file hash), every new
xorb. Each term carries its verification hash computed from the file's OWN chunk hashes — a matched chunk
is the same bytes, and keyed shards do not reveal the plain hashes. The file hash is ``hashing.file_hash`` of the
file's chunks (independent of where they live); the sha256 metadata ext is stored word-swapped.

With ``keep_layouts`` the session also keeps each file's chunk list, and ``file_layouts()`` gives, after
``finish()``, each file's *layout*: a shard of the xorbs it uses, naming the chunk at every index it uses
(``layout_shard``; other indices are size-0 placeholders). Fed back as a known shard, a layout makes a later
rewrite of the file deduplicate against it without reading the file (``xetfs.write.basecands``).

Not implemented: fragmentation prevention (dedup is taken wherever it matches) and key expiry checks of
keyed shards (this module has no clock: the caller drops expired shards). Not thread-safe: one driver calls it.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from xetfs.core.chunking import Chunk
from xetfs.core.hashing import MerkleHash, file_hash, hmac_hash, sha256_to_shard, verification_hash
from xetfs.core.shard import (FileInfo, FileTerm, Shard, XorbChunkEntry, XorbInfo, canonical,
                              xorb_info_from_built)
from xetfs.core.compression import CompressionScheme
from xetfs.core.xorb import BuiltXorb, XorbBuilder
from xetfs.errors import ValidationError
from xetfs.core.params import DEFAULT_XORB, GLOBAL_DEDUP_MODULUS, XorbParams
from xetfs.core.reconstruction import TermLike

log = logging.getLogger(__name__)

# Where a chunk lives: (known xorb hash | sequence number of a xorb built in this session, chunk index).
_Ref = MerkleHash | int
_Location = tuple[_Ref, int]


SESSION = "session"           # the source of chunks found earlier in the same session
_PLACEHOLDER = MerkleHash(bytes(32))


def layout_shard(terms: Sequence[TermLike], leaves: Sequence[tuple[MerkleHash, int]]) -> Shard:
    """A file's layout: the xorbs ``terms`` use, with the chunk hashes and sizes ``leaves`` (the file's chunks in
    order) give them; indices the file does not use are size-0 placeholders. ValueError when they do not fit."""
    by_xorb: dict[MerkleHash, dict[int, tuple[MerkleHash, int]]] = {}
    pos = 0
    for t in terms:
        n = t.chunk_end - t.chunk_start
        part = leaves[pos:pos + n]
        if len(part) != n or sum(s for _, s in part) != t.unpacked_bytes:
            raise ValueError(f"term {t.xorb_hash}[{t.chunk_start},{t.chunk_end}) does not match the chunks")
        slots = by_xorb.setdefault(t.xorb_hash, {})
        for i, leaf in enumerate(part, t.chunk_start):
            if slots.setdefault(i, leaf) != leaf:
                raise ValueError(f"xorb {t.xorb_hash} chunk {i} is named with two hashes")
        pos += n
    if pos != len(leaves):
        raise ValueError(f"the terms cover {pos} of {len(leaves)} chunks")
    xorbs: list[XorbInfo] = []
    for xorb, slots in by_xorb.items():
        entries, start = [], 0
        for i in range(max(slots) + 1):
            h, size = slots.get(i, (_PLACEHOLDER, 0))
            entries.append(XorbChunkEntry(h, start, size))
            start += size
        xorbs.append(XorbInfo(xorb, tuple(entries), start))
    return Shard((), tuple(xorbs))


@dataclass(slots=True)
class DedupStats:
    new_bytes: int = 0        # uncompressed bytes put into new xorbs
    deduped_bytes: int = 0    # uncompressed bytes found in this session or in known xorbs
    new_chunks: int = 0
    deduped_chunks: int = 0
    new_xorbs: int = 0
    deduped_by_source: dict[str, int] = field(default_factory=dict)   # source label -> deduplicated bytes


@dataclass(slots=True)
class _Run:
    """A term under construction, with the file's own chunk hashes for its verification hash."""

    ref: _Ref
    chunk_start: int
    chunk_end: int
    unpacked_bytes: int
    chunk_hashes: list[MerkleHash]


@dataclass(slots=True)
class _File:
    runs: list[_Run] = field(default_factory=list)
    leaves: list[tuple[MerkleHash, int]] = field(default_factory=list)
    finished: bool = False
    file_hash: MerkleHash | None = None
    sha256: MerkleHash | None = None


@dataclass(frozen=True, slots=True)
class _KnownXorb:
    chunk_hashes: tuple[MerkleHash, ...]   # as listed: keyed when ``key`` is set
    chunk_sizes: tuple[int, ...]
    key: bytes | None
    source: str
    learn: bool                            # offered by ``learned_xorbs`` once a chunk of it matched


def _merge_sizes(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """Two listings of one xorb's chunk sizes, where 0 is a placeholder (a partial listing, e.g. the chunks
    one base-revision file uses); None when they disagree on a chunk both list."""
    out = []
    for i in range(max(len(a), len(b))):
        x, y = a[i] if i < len(a) else 0, b[i] if i < len(b) else 0
        if x and y and x != y:
            return None
        out.append(x or y)
    return tuple(out)


class DedupSession:
    """One upload session; see the module docstring."""

    def __init__(self, xorb_params: XorbParams = DEFAULT_XORB, compression: CompressionScheme | None = None, *,
                 keep_layouts: bool = False) -> None:
        self.xorb_params = xorb_params
        self.compression = compression
        self.keep_layouts = keep_layouts   # keep each file's chunk list for ``file_layouts``
        self.stats = DedupStats()
        self._builder = XorbBuilder(xorb_params, compression)
        self._open_seq = 0
        self._built: dict[int, BuiltXorb] = {}
        self._session_hashes: dict[int, list[MerkleHash]] = {0: []}
        self._session_index: dict[MerkleHash, _Location] = {}
        self._known: dict[MerkleHash, _KnownXorb] = {}
        self._plain_index: dict[MerkleHash, _Location] = {}
        self._keyed_index: dict[bytes, dict[MerkleHash, _Location]] = {}
        self._files: dict[int, _File] = {}
        self._matched: dict[MerkleHash, dict[int, MerkleHash]] = {}   # learnable xorb -> {index: plain hash}

    @property
    def new_bytes(self) -> int:
        return self.stats.new_bytes

    @property
    def deduped_bytes(self) -> int:
        return self.stats.deduped_bytes

    # ------------------------------------------------------------------------------------------ known data

    def add_known_shard(self, shard: Shard, source: str = "known", *, learn: bool = False) -> None:
        """Register the xorbs of a shard; chunk hashes are keyed when the footer's ``hmac_key`` is nonzero.
        ``source`` labels the bytes found there in ``stats.deduped_by_source``; with ``learn`` the xorbs
        that matched are offered by ``learned_xorbs`` (e.g. a global-dedup answer worth keeping locally)."""
        key = shard.footer.hmac_key if shard.footer is not None else None
        for info in shard.xorbs:
            self._add_known(info, bytes(key) if key is not None and not key.is_zero() else None, source, learn)

    def add_known_xorb(self, info: XorbInfo, source: str = "known") -> None:
        """Register a xorb whose chunk hashes are plain (e.g. one this client uploaded earlier)."""
        self._add_known(info, None, source, False)

    def learned_xorbs(self) -> tuple[XorbInfo, ...]:
        """The learnable known xorbs a chunk matched, with plain chunk hashes where a chunk matched (the
        others keep their listed, possibly keyed, hash: it matches no plain chunk hash)."""
        out: list[XorbInfo] = []
        for xorb, matched in self._matched.items():
            kx = self._known[xorb]
            entries, start = [], 0
            for i, (h, size) in enumerate(zip(kx.chunk_hashes, kx.chunk_sizes)):
                entries.append(XorbChunkEntry(matched.get(i, h), start, size))
                start += size
            out.append(XorbInfo(xorb, tuple(entries), start))
        return tuple(out)

    def _add_known(self, info: XorbInfo, key: bytes | None, source: str, learn: bool) -> None:
        """Register a xorb; a xorb known already (e.g. from a shard that lists only some of its chunk hashes
        plainly) is indexed again under this listing's key, so every chunk either listing names is found."""
        hashes = tuple(MerkleHash(c.chunk_hash) for c in info.chunks)
        sizes = tuple(c.unpacked_bytes for c in info.chunks)
        known = self._known.get(info.xorb_hash)
        if known is None:
            self._known[info.xorb_hash] = _KnownXorb(hashes, sizes, key, source, learn)
        elif known.chunk_sizes != sizes:
            merged = _merge_sizes(known.chunk_sizes, sizes)
            if merged is None:
                log.warning("xorb %s is listed with other chunk sizes; keeping the first listing", info.xorb_hash)
                return
            self._known[info.xorb_hash] = replace(known, chunk_sizes=merged)
        index = self._plain_index if key is None else self._keyed_index.setdefault(key, {})
        for i, h in enumerate(hashes):
            if sizes[i]:   # a size-0 entry is a placeholder of a partial listing
                index.setdefault(h, (info.xorb_hash, i))

    def dedup_queries(self, chunks: Sequence[Chunk], file_start: bool) -> list[MerkleHash]:
        """Chunk hashes worth a global-dedup query — a file's first chunk and hash % 1024 == 0 — that
        this session cannot already place."""
        out: list[MerkleHash] = []
        for i, c in enumerate(chunks):
            eligible = (i == 0 and file_start) or c.hash.modulo(GLOBAL_DEDUP_MODULUS) == 0
            if eligible and c.hash not in out and self._lookup(c) is None:
                out.append(c.hash)
        return out

    # ------------------------------------------------------------------------------------------ files

    def start_file(self) -> int:
        file_id = len(self._files)
        self._files[file_id] = _File()
        return file_id

    def add_chunks(self, file_id: int, chunks: Sequence[Chunk]) -> list[BuiltXorb]:
        """Place the next chunks of a file; returns the xorbs completed by this call (upload them now)."""
        f = self._open_file(file_id)
        completed: list[BuiltXorb] = []
        for c in chunks:
            loc = self._continuation(f, c) or self._lookup(c)
            if loc is None:
                loc = self._add_new(c, completed)
            else:
                self._count_dedup(loc, c)
            self._extend(f, loc, c)
        return completed

    def finish_file(self, file_id: int, sha256_digest: bytes | None) -> MerkleHash:
        """Close a file; ``sha256_digest`` (raw 32 bytes) adds the metadata ext. Returns the file hash."""
        f = self._open_file(file_id)
        f.finished = True
        f.file_hash = file_hash(f.leaves)
        f.sha256 = sha256_to_shard(sha256_digest) if sha256_digest is not None else None
        if not self.keep_layouts:
            f.leaves = []
        return f.file_hash

    def finish(self) -> tuple[list[BuiltXorb], Shard]:
        """The last xorb (if any) and the upload shard covering every file and every new xorb."""
        unfinished = [i for i, f in self._files.items() if not f.finished]
        if unfinished:
            raise ValidationError(f"files {unfinished} were started but not finished")
        last = [self._complete_open()] if len(self._builder) else []
        files = tuple(self._file_info(f) for f in self._files.values())
        xorbs = tuple(xorb_info_from_built(self._built[seq]) for seq in sorted(self._built))
        log.debug("dedup session: %d files, %d new xorbs, %s", len(files), len(xorbs), self.stats)
        return last, canonical(Shard(files, xorbs))

    def file_layouts(self) -> dict[MerkleHash, Shard]:
        """After ``finish()``, with ``keep_layouts``: each file's layout (module docstring), by file hash."""
        out: dict[MerkleHash, Shard] = {}
        for f in self._files.values():
            if f.file_hash is not None and f.leaves and f.file_hash not in out:
                out[f.file_hash] = layout_shard([t for t, _ in self._terms(f)], f.leaves)
        return out

    # ------------------------------------------------------------------------------------------ internals

    def _open_file(self, file_id: int) -> _File:
        f = self._files.get(file_id)
        if f is None or f.finished:
            raise ValidationError(f"file {file_id} is not open in this session")
        return f

    def _keyed(self, c: Chunk, key: bytes | None) -> MerkleHash:
        return c.hash if key is None else hmac_hash(c.hash, key)

    def _continuation(self, f: _File, c: Chunk) -> _Location | None:
        """The chunk right after the file's last term, when it is this chunk (longer terms)."""
        if not f.runs:
            return None
        ref, idx = f.runs[-1].ref, f.runs[-1].chunk_end
        if isinstance(ref, int):
            hashes = self._session_hashes[ref]
            return (ref, idx) if idx < len(hashes) and hashes[idx] == c.hash else None
        kx = self._known[ref]
        if idx < len(kx.chunk_hashes) and kx.chunk_sizes[idx] == c.size and \
                kx.chunk_hashes[idx] == self._keyed(c, kx.key):
            return ref, idx
        return None

    def _lookup(self, c: Chunk) -> _Location | None:
        loc = self._session_index.get(c.hash) or self._plain_index.get(c.hash)
        if loc is None:
            for key, index in self._keyed_index.items():
                loc = index.get(hmac_hash(c.hash, key))
                if loc is not None:
                    break
        if loc is not None and not isinstance(loc[0], int) and self._known[loc[0]].chunk_sizes[loc[1]] != c.size:
            log.warning("known xorb %s lists chunk %d with another size; not deduplicating", loc[0], loc[1])
            return None
        return loc

    def _count_dedup(self, loc: _Location, c: Chunk) -> None:
        self.stats.deduped_bytes += c.size
        self.stats.deduped_chunks += 1
        ref, idx = loc
        source = SESSION
        if not isinstance(ref, int):
            kx = self._known[ref]
            source = kx.source
            if kx.learn:
                self._matched.setdefault(ref, {})[idx] = c.hash
        by = self.stats.deduped_by_source
        by[source] = by.get(source, 0) + c.size

    def _add_new(self, c: Chunk, completed: list[BuiltXorb]) -> _Location:
        if not self._builder.can_add(c.size):
            if not len(self._builder):
                raise ValidationError(f"a {c.size}-byte chunk does not fit in a xorb ({self.xorb_params})")
            completed.append(self._complete_open())
        idx = self._builder.add(c)
        loc: _Location = (self._open_seq, idx)
        self._session_hashes[self._open_seq].append(c.hash)
        self._session_index.setdefault(c.hash, loc)
        self.stats.new_bytes += c.size
        self.stats.new_chunks += 1
        return loc

    def _complete_open(self) -> BuiltXorb:
        built = self._builder.finish()
        # Keep the hashes and sizes only: the caller uploads ``built.data`` and drops it (bounded memory).
        self._built[self._open_seq] = replace(built, data=b"")
        self.stats.new_xorbs += 1
        self._open_seq += 1
        self._session_hashes[self._open_seq] = []
        self._builder = XorbBuilder(self.xorb_params, self.compression)
        return built

    def _extend(self, f: _File, loc: _Location, c: Chunk) -> None:
        ref, idx = loc
        last = f.runs[-1] if f.runs else None
        if last is not None and type(last.ref) is type(ref) and last.ref == ref and last.chunk_end == idx:
            last.chunk_end += 1
            last.unpacked_bytes += c.size
            last.chunk_hashes.append(c.hash)
        else:
            f.runs.append(_Run(ref, idx, idx + 1, c.size, [c.hash]))
        f.leaves.append((c.hash, c.size))

    def _resolve(self, ref: _Ref) -> MerkleHash:
        return self._built[ref].hash if isinstance(ref, int) else ref

    def _terms(self, f: _File) -> list[tuple[FileTerm, list[MerkleHash]]]:
        """The file's terms (runs on the same xorb merged) with the file's own chunk hashes of each."""
        terms: list[tuple[FileTerm, list[MerkleHash]]] = []
        for run in f.runs:
            xorb = self._resolve(run.ref)
            if terms and terms[-1][0].xorb_hash == xorb and terms[-1][0].chunk_end == run.chunk_start:
                prev, hashes = terms[-1]
                terms[-1] = (FileTerm(xorb, prev.chunk_start, run.chunk_end,
                                      prev.unpacked_bytes + run.unpacked_bytes), hashes + run.chunk_hashes)
            else:
                terms.append((FileTerm(xorb, run.chunk_start, run.chunk_end, run.unpacked_bytes),
                              run.chunk_hashes))
        return terms

    def _file_info(self, f: _File) -> FileInfo:
        terms = self._terms(f)
        assert f.file_hash is not None
        return FileInfo(f.file_hash, tuple(t for t, _ in terms), tuple(verification_hash(h) for _, h in terms),
                        f.sha256)
