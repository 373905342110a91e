"""The regular-file store (read/regular_store.py): content-addressed by git blob id, checked on every read, small
files only, and no path from a hostile oid."""
from __future__ import annotations

from pathlib import Path

from xetfs.core.gitblob import git_blob_oid
from xetfs.read.regular_store import MAX_BYTES, get_regular, has_regular, put_regular, regular_path


def test_a_stored_file_is_checked_on_read_and_dropped_when_damaged(tmp_path: Path) -> None:
    data = b'{"model_type": "demo"}\n'
    oid = git_blob_oid(data)
    assert put_regular(tmp_path, oid, data) and has_regular(tmp_path, oid)
    assert get_regular(tmp_path, oid, len(data)) == data
    assert get_regular(tmp_path, oid, len(data) + 1) is None          # the tree says another size: not it
    path = regular_path(tmp_path, oid)
    assert path is not None
    path.write_bytes(data.upper())
    assert get_regular(tmp_path, oid, len(data)) is None and not path.exists()


def test_only_matching_small_files_under_git_blob_names_are_stored(tmp_path: Path) -> None:
    assert not put_regular(tmp_path, git_blob_oid(b"a"), b"b")          # bytes that are not the blob
    big = bytes(MAX_BYTES + 1)
    assert not put_regular(tmp_path, git_blob_oid(big), big)
    for hostile in ("../../etc/passwd", "ab/../../x", "A" * 40, ""):
        assert regular_path(tmp_path, hostile) is None and get_regular(tmp_path, hostile, 0) is None
    assert not list(tmp_path.rglob("*"))
