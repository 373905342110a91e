"""Stored objects checked against what they claim to be: healing on re-upload, and ``xetfs fsck``.

Every object is content-addressed, so each can be verified on its own: a xorb decodes to chunks whose
hashes and serialized layout match its index record; a shard's sha256 is its name; an inline file's git
blob oid is its name. A bad object is moved under ``quarantine/`` (kept for inspection, never served) and
the index keeps its record, so a client re-uploading the good xorb heals the store (``heal_xorb``).
Synchronous (storage, CPU): call from a worker thread.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

from xetfs.core.gitblob import git_blob_oid
from xetfs.core.hashing import MerkleHash, chunk_hash
from xetfs.core.xorb import decode_chunks, parse_chunk_records
from xetfs.errors import FormatError, NotFound
from xetfs.server.metadata.gcstore import GcStore
from xetfs.server.metadata.store import Metadata, XorbRecord
from xetfs.server.stores.base import Storage

QUARANTINE = "quarantine/"


def xorb_problem(storage: Storage, rec: XorbRecord) -> str | None:
    """Why the stored copy of ``rec`` is bad, or None when every chunk matches its indexed hash and offset."""
    key = f"xorbs/{rec.hash}"
    try:
        data = storage.get(key)
    except NotFound:
        return "missing"
    if len(data) != rec.stored_bytes:
        return f"{len(data)} bytes, indexed {rec.stored_bytes}"
    try:
        records = parse_chunk_records(data)
        offsets = tuple(r.offset for r in records) + (len(data),)
        chunks = decode_chunks(data)
    except FormatError as exc:
        return str(exc)
    if offsets != rec.chunk_offsets:
        return "chunk records do not match the indexed offsets"
    if any(chunk_hash(c) != h for c, h in zip(chunks, rec.chunk_hashes, strict=True)):
        return "a chunk does not match its hash"
    return None


def quarantine(storage: Storage, key: str) -> None:
    """Move ``key`` under ``quarantine/`` (a second bad copy of the same key keeps the first one)."""
    try:
        data = storage.get(key)
    except NotFound:
        return
    storage.put_if_absent(QUARANTINE + key, data)
    storage.delete(key)


def heal_xorb(storage: Storage, indexed: XorbRecord, fresh: XorbRecord, data: bytes) -> bool:
    """A validated upload of an indexed xorb replaces a bad stored copy (``xorb_problem`` said so) when it
    has the indexed layout (same chunk hashes and offsets, so plans made from the index stay right).
    -> True if it healed."""
    if (fresh.chunk_hashes, fresh.chunk_offsets) != (indexed.chunk_hashes, indexed.chunk_offsets):
        return False
    quarantine(storage, f"xorbs/{indexed.hash}")
    storage.put_if_absent(f"xorbs/{indexed.hash}", data)
    return True


@dataclass
class FsckReport:
    checked: dict[str, int] = field(default_factory=lambda: {"xorbs": 0, "shards": 0, "blobs": 0})
    bad: list[tuple[str, str]] = field(default_factory=list)      # (key, why)


def _checks(storage: Storage, meta: Metadata) -> Iterator[tuple[str, str, Callable[[], str | None]]]:
    index = GcStore(meta.database)            # the collector's listings: every xorb, shard and tree's blob
    for h in sorted(x for x, _, _ in index.xorbs()):
        rec = meta.xorb(MerkleHash.from_hex(h))
        if rec is not None:
            yield "xorbs", f"xorbs/{h}", partial(xorb_problem, storage, rec)
    for name in sorted(x for x, _, _ in index.shards()):
        yield "shards", f"shards/{name}", partial(_named_by, storage, f"shards/{name}", name, _sha256_hex)
    for oid in sorted(index.tree_blobs()):
        yield "blobs", f"blobs/{oid}", partial(_named_by, storage, f"blobs/{oid}", oid, git_blob_oid)


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _named_by(storage: Storage, key: str, name: str, digest: Callable[[bytes], str]) -> str | None:
    try:
        data = storage.get(key)
    except NotFound:
        return "missing"
    return None if digest(data) == name else "content does not match its name"


def fsck(storage: Storage, meta: Metadata, *, move_bad: bool = True,
         progress: Callable[[FsckReport], None] | None = None, every: int = 100) -> FsckReport:
    """Verify every indexed object; quarantine the bad ones (unless ``move_bad`` is False)."""
    report = FsckReport()
    for n, (kind, key, check) in enumerate(_checks(storage, meta), 1):
        why = check()
        report.checked[kind] += 1
        if why is not None:
            report.bad.append((key, why))
            if move_bad and why != "missing":
                quarantine(storage, key)
        if progress is not None and n % every == 0:
            progress(report)
    return report
