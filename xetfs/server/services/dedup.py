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
from xetfs.core.shard import Shard, XorbChunkEntry, XorbInfo, serialize_full_shard
from xetfs.server.context import State
from xetfs.server.metadata.store import XorbRecord
from xetfs.server.services.cas import indexed_xorb

MAX_DEDUP_XORBS = 32
DEDUP_KEY_TTL_S = 3600


def xorb_info(rec: XorbRecord) -> XorbInfo:
    """A shard's xorb block as the server serves it: uncompressed offsets, ``num_bytes_on_disk`` = stored size."""
    entries, start = [], 0
    for h, size in zip(rec.chunk_hashes, rec.chunk_sizes):
        entries.append(XorbChunkEntry(h, start, size))
        start += size
    return XorbInfo(rec.hash, tuple(entries), start, rec.stored_bytes)


def dedup_shard(st: State, chunk: MerkleHash) -> bytes | None:
    """A full shard (footer, lookup tables) listing the xorb that holds ``chunk`` and, when ``chunk`` starts
    a known file, the other xorbs of that file (so a re-upload learns them all at once); None = unknown."""
    xorb, file_hash = st.meta.dedup_entry(chunk)
    if xorb is None:
        return None
    hashes = [xorb]
    rec = st.meta.file(file_hash) if file_hash is not None else None
    for t in rec.terms if rec is not None else ():
        if t.xorb_hash not in hashes and len(hashes) < MAX_DEDUP_XORBS:
            hashes.append(t.xorb_hash)
    infos = tuple(xorb_info(indexed_xorb(st, h)) for h in hashes)
    now = int(time.time())
    key = secrets.token_bytes(32) if st.dedup_keyed else bytes(32)
    return serialize_full_shard(Shard((), infos), hmac_key=key, creation_timestamp=now,
                                key_expiry=now + DEDUP_KEY_TTL_S)
