"""The sha256 a shard claims for a file is recomputed before the server keeps it (docs/security.md).

A Hub commit names a Xet file by sha256 (``lfsFile``), and that sha256 becomes the tree entry's ``lfs.oid`` and
the ``ETag`` of ``/resolve``. So the claim in a shard's metadata extension is checked against the bytes: the
server reads the file from its stored xorbs (``assemble.file_sha256``: ~8 MiB batches, the next one read while
one is hashed, in the upload's worker thread) and refuses the shard (400) when the sha256 differs. The chunks
are not hashed again on the way: every stored xorb was checked chunk by chunk when it was uploaded, and a copy
damaged since can only make the sha256 differ, never match a claim it should not. Only a differing sha256 is
read a second time with every chunk checked, so a damaged copy is reported as such and its sha256 is never
remembered. A file
already registered with the same sha256 is not read again: one content has one sha256, and every claim stored
since this check was added was verified. A wrong claim therefore never reaches the index, whoever made it
(no squatting of another file's sha256, no real content under a fake sha256). The sha256 computed for a file
is remembered (``KNOWN_FILES`` entries, per process), so repeating a wrong claim costs no second read.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from xetfs.errors import IntegrityError
from xetfs.server.context import State
from xetfs.server.services.assemble import file_sha256
from xetfs.server.services.validation import ValidShard


KNOWN_FILES = 4096

_computed: OrderedDict[str, str] = OrderedDict()      # file hash -> sha256 hex computed here (LRU)
_lock = threading.Lock()


def _remembered(file_hash: str) -> str | None:
    with _lock:
        sha = _computed.get(file_hash)
        if sha is not None:
            _computed.move_to_end(file_hash)
        return sha


def _remember(file_hash: str, sha: str) -> None:
    with _lock:
        _computed[file_hash] = sha
        while len(_computed) > KNOWN_FILES:
            _computed.popitem(last=False)


def verify_sha256_claims(st: State, valid: ValidShard) -> None:
    """IntegrityError (400) unless every sha256 ``valid`` gives is the sha256 of its file's stored bytes."""
    for rec in valid.files:
        if rec.sha256 is None:
            continue
        known = st.meta.file(rec.hash)
        if known is not None and known.sha256 == rec.sha256:
            continue
        actual = _remembered(str(rec.hash))
        if actual is None:
            actual = file_sha256(st, rec, check_chunks=False)
            if actual != rec.sha256:   # a wrong claim, or a damaged stored copy (IntegrityError of its own)
                actual = file_sha256(st, rec)
            st.metrics.inc("xetfs_cas_sha256_verified_bytes_total", rec.size)
            _remember(str(rec.hash), actual)
        if actual != rec.sha256:
            raise IntegrityError(f"file {rec.hash}: the shard gives sha256 {rec.sha256}, but its content hashes "
                                 f"to {actual}")
