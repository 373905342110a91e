"""CAS domain logic: which files a token may read, reconstruction plans, xorb and shard intake.

Repo binding (``auth``: a CAS token names one repo): every route that hands out a file's reconstruction
serves only a file reachable from that repo (``Metadata.file_reachable``: in some commit of the repo, or
registered by a shard uploaded with a token of the repo); any other file is the same 404 as an unknown one,
so existence does not leak (docs/security.md). A shard upload records the uploading token's repo.

Every function here is synchronous (SQL, storage, CPU): routes call them through ``State.run``.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from xetfs.core.hashing import ZERO_HASH, MerkleHash
from xetfs.core.reconstruction import FetchRange, Reconstruction, plan_reconstruction
from xetfs.errors import Forbidden, NotFound
from xetfs.server.auth import ANONYMOUS, DATA_URL_TTL_S, MAX_SIGNED_RANGES, CasClaims
from xetfs.server.context import State
from xetfs.server.metadata.store import FileRecord, XorbRecord
from xetfs.server.services.integrity import heal_xorb, xorb_problem
from xetfs.server.services.validation import ValidShard, ValidXorb, check_xorb

log = logging.getLogger(__name__)

MAX_COVER_FILES = 64                # files looked at to decide that a repo may read a whole xorb


def xorb_key(xorb: MerkleHash | str) -> str:
    return f"xorbs/{xorb}"


def file_record(st: State, file_hash: MerkleHash) -> FileRecord:
    rec = st.meta.file(file_hash)
    if rec is None:
        if file_hash == ZERO_HASH:        # the empty file needs no upload
            return FileRecord(ZERO_HASH, 0, (), None)
        raise NotFound(f"file {file_hash} not found")
    return rec


def token_repo(st: State, claims: CasClaims) -> int | None:
    """The repo a CAS token is bound to -> its row id; None for an anonymous ``--public-read`` caller.
    NotFound when the repo is gone (deleted after the token was issued, even if created again since)."""
    if claims.sub == ANONYMOUS and not claims.repo:
        return None
    repo = st.meta.repo_by_key(claims.repo)
    if repo is None or repo.id != claims.rid:
        raise NotFound(f"repository {claims.repo} not found")
    return repo.id


def readable_file(st: State, claims: CasClaims, file_hash: MerkleHash) -> FileRecord:
    """``file_record`` for a caller holding ``claims``: a file not reachable from the token's repo is the
    same 404 as an unknown file. The empty file reveals nothing and is always served."""
    if file_hash != ZERO_HASH and not st.meta.file_reachable(token_repo(st, claims), file_hash):
        raise NotFound(f"file {file_hash} not found")
    return file_record(st, file_hash)


def indexed_xorb(st: State, h: MerkleHash) -> XorbRecord:
    rec = st.meta.xorb(h)
    if rec is None:
        raise NotFound(f"xorb {h} missing from the index")
    return rec


def plan(st: State, rec: FileRecord, byte_range: tuple[int, int] | None, verify: bool = True) -> Reconstruction:
    """The server's reconstruction plan from the metadata alone (no xorb is read)."""
    return plan_reconstruction(rec.terms, byte_range, lambda x: indexed_xorb(st, x).chunk_offsets,
                               (lambda x: indexed_xorb(st, x).chunk_hashes) if verify else None,
                               chunk_sizes=lambda x: indexed_xorb(st, x).chunk_sizes)


def xorb_readable(st: State, repo: int | None, xorb: XorbRecord) -> bool:
    """May a token of ``repo`` read every chunk of ``xorb``? True when the terms of the files it can read
    cover all of the xorb's chunks (then a URL for the whole xorb reveals nothing more)."""
    if repo is None:
        return False
    covered = bytearray(len(xorb.chunk_hashes))
    for fh in st.meta.files_with_xorb(xorb.hash, MAX_COVER_FILES):
        rec = st.meta.file(fh) if st.meta.file_reachable(repo, fh) else None
        for t in rec.terms if rec is not None else ():
            if t.xorb_hash == xorb.hash:
                covered[t.chunk_start:t.chunk_end] = b"\x01" * (t.chunk_end - t.chunk_start)
    return all(covered)


def fetch_urls(st: State, base: str, r: Reconstruction, repo: int | None) -> Callable[[FetchRange], str]:
    """The URL of every fetch range of ``r`` for a token of ``repo``: no URL grants a byte the token may not
    read.

    With a store that presigns, a presigned GET on the object store (``State.direct_url``, any range of
    the object) is handed out when the range covers the whole xorb, or when the repo may read every chunk
    of the xorb (``xorb_readable``). Every other range gets this node's ``/v1/data`` URL, signed for the
    ranges of up to ``MAX_SIGNED_RANGES`` fetch ranges of one xorb (so a client may fetch them in one
    multi-range request), and refused for any other byte (``routes.data``)."""
    urls: dict[tuple[MerkleHash, int, int], str] = {}
    for xorb, ranges in r.fetch.items():
        rec = indexed_xorb(st, xorb)
        h, whole = str(xorb), rec.stored_bytes - 1
        direct = st.direct_url(xorb_key(h), DATA_URL_TTL_S)
        if direct is not None and not all((fr.byte_start, fr.byte_end) == (0, whole) for fr in ranges) \
                and not xorb_readable(st, repo, rec):
            direct = None
        rest = []
        for fr in ranges:
            if direct is not None:
                urls[(xorb, fr.byte_start, fr.byte_end)] = direct
            else:
                rest.append(fr)
        for i in range(0, len(rest), MAX_SIGNED_RANGES):
            group = rest[i:i + MAX_SIGNED_RANGES]
            query = st.auth.data_query(h, [(fr.byte_start, fr.byte_end) for fr in group], DATA_URL_TTL_S)
            for fr in group:
                urls[(xorb, fr.byte_start, fr.byte_end)] = f"{base}/v1/data/{h}?{query}"
    return lambda fr: urls[(fr.xorb_hash, fr.byte_start, fr.byte_end)]


def check_requested_ranges(requested: list[tuple[int, int]], signed: list[tuple[int, int]]) -> None:
    """A data URL serves only its signed bytes: each requested ``[start, end)`` lies inside a signed range
    (inclusive ends; adjacent signed ranges join), the requested ranges do not overlap, and there are at
    most ``MAX_SIGNED_RANGES`` of them. Forbidden otherwise."""
    if len(requested) > MAX_SIGNED_RANGES:
        raise Forbidden(f"at most {MAX_SIGNED_RANGES} ranges per request")
    spans: list[list[int]] = []
    for a, b in sorted(signed):
        if spans and a <= spans[-1][1] + 1:
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    if not requested or not all(any(a <= s and e - 1 <= b for a, b in spans) for s, e in requested):
        raise Forbidden("this data URL is not signed for the requested bytes")
    ordered = sorted(requested)
    if any(ordered[i][1] > ordered[i + 1][0] for i in range(len(ordered) - 1)):
        raise Forbidden("overlapping ranges")


def store_xorb(st: State, valid: ValidXorb) -> bool:
    """Store a validated xorb and index it; False if it was already indexed."""
    st.storage.put_if_absent(xorb_key(valid.record.hash), valid.data)
    return st.meta.add_xorb(valid.record, valid.dedup_chunks)


def reupload_xorb(st: State, body: bytes, xorb: MerkleHash) -> bool:
    """An upload of an indexed xorb: a no-op while the stored copy is good; a validated body heals a
    damaged or missing copy (``integrity.heal_xorb``). -> True if it healed."""
    indexed = indexed_xorb(st, xorb)
    why = xorb_problem(st.storage, indexed)
    if why is None:
        return False
    valid = check_xorb(body, str(xorb))
    healed = heal_xorb(st.storage, indexed, valid.record, valid.data)
    log.warning("stored xorb %s was bad (%s): %s", xorb, why, "healed by a re-upload" if healed else
                "the re-upload has another layout; not replaced")
    return healed


def store_shard(st: State, valid: ValidShard, body: bytes, claims: CasClaims) -> bool:
    """Store a validated shard and register its files under the uploading token's repo; True if new."""
    uploader = token_repo(st, claims)     # before storing: a token of a deleted repo registers nothing
    st.storage.put_if_absent(f"shards/{valid.hash}", body)
    return st.meta.add_shard(valid.hash, len(body), valid.files, valid.dedup_chunks, uploader)
