"""Git object ids the Hub API shows for files (docs/protocol.md, "Tree entries").

A regular file's tree ``oid`` is the git blob sha1 of its content; a Xet/LFS file's is the git blob sha1 of its
git-LFS pointer. Shared by the server (tree listings, commits) and the client (checking what a commit holds).
"""
from __future__ import annotations

import hashlib


def git_blob_hasher(size: int) -> "hashlib._Hash":
    """A sha1 already fed git's ``blob <size>\\0`` header: feed it the content (streamed or whole)."""
    return hashlib.sha1(b"blob %d\x00" % size)


def git_blob_oid(data: bytes) -> str:
    """sha1 of ``b"blob <size>\\0" + data``, as git names a blob."""
    h = git_blob_hasher(len(data))
    h.update(data)
    return h.hexdigest()


def lfs_pointer(sha256_hex: str, size: int) -> bytes:
    """The git-LFS pointer file of a Xet/LFS file (its ``pointerSize`` is this length)."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256_hex}\nsize {size}\n".encode()
