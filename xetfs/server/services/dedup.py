"""Global dedup answers (docs/protocol.md, "global dedup"): a chunk hash -> a shard of xorbs likely to help.

Deliberately NOT bound to the token's repo: like the Hub, dedup works across repos. The answer carries
xorb hashes, sizes and chunk hashes keyed with a fresh random key (``--dedup-hmac random``), never data or
data URLs, and it is only given to a caller who already knows the raw chunk hash (i.e. has the data).
Reading still needs a reconstruction, which is repo-bound (a shard naming those xorbs must prove the raw
chunk hashes: validation recomputes the file and verification hashes). With ``--dedup-hmac none`` the
answer's chunk hashes are plain, which would let a caller register (and so read) those xorbs' chunks: use
that mode only between trusted clients. What this view reveals is listed in docs/security.md.
"""
from __future__ import annotations

import secrets
import time

from xetfs.core.hashing import MerkleHash
from xetfs.core.params import GLOBAL_DEDUP_MODULUS
from xetfs.core.shard import Shard, XorbChunkEntry, XorbInfo, serialize_full_shard
from xetfs.server.auth import CasClaims
from xetfs.server.context import State
from xetfs.server.metadata.store import XorbRecord
from xetfs.server.services.cas import indexed_xorb

MAX_DEDUP_XORBS = 32                # xorbs in one answer to a hit (~2 GiB of data at 64 MiB per xorb)
MAX_NEIGHBOUR_FILES = 8             # files referencing the hit's xorb that name neighbours
MAX_REPO_XORBS = 64                 # xorbs in one answer to a first-chunk miss
DEDUP_KEY_TTL_S = 3600


def xorb_info(rec: XorbRecord) -> XorbInfo:
    """A shard's xorb block as the server serves it: uncompressed offsets, ``num_bytes_on_disk`` = stored size."""
    entries, start = [], 0
    for h, size in zip(rec.chunk_hashes, rec.chunk_sizes):
        entries.append(XorbChunkEntry(h, start, size))
        start += size
    return XorbInfo(rec.hash, tuple(entries), start, rec.stored_bytes)


def _neighbours(st: State, xorb: MerkleHash, file_hash: MerkleHash | None) -> list[MerkleHash]:
    """``xorb`` first, then the xorbs of the files that reference it (the file the chunk starts first, then
    the earliest registered), each from ``xorb`` onwards and then the ones before it; at most
    ``MAX_DEDUP_XORBS``."""
    out = [xorb]
    files = ([file_hash] if file_hash is not None else []) + st.meta.files_with_xorb(xorb, MAX_NEIGHBOUR_FILES)
    for fh in files:
        rec = st.meta.file(fh)
        order = list(dict.fromkeys(t.xorb_hash for t in rec.terms)) if rec is not None else []
        at = order.index(xorb) if xorb in order else 0
        for h in order[at:] + order[:at]:
            if len(out) >= MAX_DEDUP_XORBS:
                return out
            if h not in out:
                out.append(h)
    return out


def repo_xorbs(st: State, repo_key: str, rev: str) -> list[MerkleHash]:
    """The xorbs of the Xet files at ``rev`` of the repo a CAS token names (paths in order, terms in order),
    at most ``MAX_REPO_XORBS``; [] when the repo or revision is gone."""
    repo = st.meta.repo_by_key(repo_key)
    oid = st.meta.refs(repo).get(rev) if repo is not None else None
    head = st.meta.commit(repo, oid or rev) if repo is not None else None
    if head is None:
        return []
    out: dict[MerkleHash, None] = {}
    tree = st.meta.tree(head.tree)
    for path in sorted(tree):
        entry = tree[path]
        rec = st.meta.file(MerkleHash.from_hex(entry["xet"])) if "xet" in entry else None
        for t in rec.terms if rec is not None else ():
            if len(out) >= MAX_REPO_XORBS:
                return list(out)
            out[t.xorb_hash] = None
    return list(out)


def _shard_of(st: State, hashes: list[MerkleHash]) -> bytes:
    infos = tuple(xorb_info(indexed_xorb(st, h)) for h in hashes)
    now = int(time.time())
    key = secrets.token_bytes(32) if st.dedup_keyed else bytes(32)
    return serialize_full_shard(Shard((), infos), hmac_key=key, creation_timestamp=now,
                                key_expiry=now + DEDUP_KEY_TTL_S)


def dedup_shard(st: State, chunk: MerkleHash, claims: CasClaims | None = None) -> bytes | None:
    """A full shard (footer, lookup tables) of xorbs likely to help an uploader holding ``chunk``; None = no
    answer (404).

    A hit (``chunk`` is indexed) names the xorb that holds it and its neighbours: the xorbs of the files
    that reference that xorb, so a re-saved file dedups against every unchanged xorb after one hit. A miss
    on a chunk that is not dedup-eligible by its hash can only be a file's first chunk (clients query those
    and the eligible ones); when the caller's token is bound to a repo, that miss is answered with the
    xorbs of the repo's files at the token's revision: a re-saved file starts with a new header the server
    has never seen, and the rest of it is most likely in the repo already."""
    xorb, file_hash = st.meta.dedup_entry(chunk)
    if xorb is not None:
        return _shard_of(st, _neighbours(st, xorb, file_hash))
    if claims is None or not claims.repo or chunk.modulo(GLOBAL_DEDUP_MODULUS) == 0:
        return None
    hashes = repo_xorbs(st, claims.repo, claims.rev)
    return _shard_of(st, hashes) if hashes else None
