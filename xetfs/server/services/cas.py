"""CAS domain logic: which files a token may read, reconstruction plans, xorb and shard intake.

Repo binding (``auth``: a CAS token names one repo): every route that hands out a file's reconstruction
serves only a file reachable from that repo (``Metadata.file_reachable``: in some commit of the repo, or
registered by a shard uploaded with a token of the repo); any other file is the same 404 as an unknown one,
so existence does not leak (docs/security.md). A shard upload records the uploading token's repo.

Every function here is synchronous (SQL, storage, CPU): routes call them through ``State.run``.
"""
from __future__ import annotations

from xetfs.core.hashing import ZERO_HASH, MerkleHash
from xetfs.core.reconstruction import Reconstruction, plan_reconstruction
from xetfs.errors import NotFound
from xetfs.server.auth import CasClaims
from xetfs.server.context import State
from xetfs.server.metadata.store import FileRecord, XorbRecord
from xetfs.server.services.validation import ValidShard, ValidXorb


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
    NotFound when the repo is gone (deleted after the token was issued)."""
    if claims.sub == "anonymous" and not claims.repo:
        return None
    repo = st.meta.repo_by_key(claims.repo)
    if repo is None:
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


def store_xorb(st: State, valid: ValidXorb) -> bool:
    """Store a validated xorb and index it; False if it was already indexed."""
    st.storage.put_if_absent(xorb_key(valid.record.hash), valid.data)
    return st.meta.add_xorb(valid.record, valid.dedup_chunks)


def store_shard(st: State, valid: ValidShard, body: bytes, claims: CasClaims) -> bool:
    """Store a validated shard and register its files under the uploading token's repo; True if new."""
    uploader = token_repo(st, claims)     # before storing: a token of a deleted repo registers nothing
    st.storage.put_if_absent(f"shards/{valid.hash}", body)
    return st.meta.add_shard(valid.hash, len(body), valid.files, valid.dedup_chunks, uploader)
