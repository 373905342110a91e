"""Git object ids the Hub API shows for files (shared/hub-api.md §4.4).

A regular file's tree ``oid`` is the git blob sha1 of its content; a Xet/LFS file's is the git blob sha1 of its
git-LFS pointer. Shared by the server (tree listings, commits) and the client (checking what a commit holds).
"""
from __future__ import annotations

import hashlib


def git_blob_oid(data: bytes) -> str:
    """sha1 of ``b"blob <size>\\0" + data``, as git names a blob."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def lfs_pointer(sha256_hex: str, size: int) -> bytes:
    """The git-LFS pointer file of a Xet/LFS file (its ``pointerSize`` is this length)."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256_hex}\nsize {size}\n".encode()
