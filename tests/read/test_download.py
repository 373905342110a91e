"""Snapshot download's pure parts (read/download.py): which entries a PATH selects, and where a repo path lands."""
from __future__ import annotations

from pathlib import Path

import pytest

from xetfs.errors import NotFound, ValidationError
from xetfs.protocol.hub import TreeEntry
from xetfs.read.download import Skipped, local_path, select, split_unsafe

ENTRIES = [TreeEntry("README.md", "file", 5, "a" * 40), TreeEntry("data", "directory", 0, "b" * 40),
           TreeEntry("data/a.bin", "file", 7, "c" * 40), TreeEntry("data/b/c.bin", "file", 9, "d" * 40),
           TreeEntry("database.txt", "file", 3, "e" * 40)]


def _paths(chosen: list[TreeEntry]) -> list[str]:
    return [e.path for e in chosen]


def test_no_path_selects_every_file_and_no_directory() -> None:
    assert _paths(select(ENTRIES, [])) == ["README.md", "data/a.bin", "data/b/c.bin", "database.txt"]


def test_a_directory_selects_what_is_under_it_not_its_name_prefix() -> None:
    assert _paths(select(ENTRIES, ["data/"])) == ["data/a.bin", "data/b/c.bin"]
    assert _paths(select(ENTRIES, ["/data/b", "README.md", "data/b/c.bin"])) == ["README.md", "data/b/c.bin"]


def test_a_path_that_names_nothing_is_not_found() -> None:
    with pytest.raises(NotFound, match="dat: not in the repo"):
        select(ENTRIES, ["README.md", "dat"])


UNSAFE = ["", "/etc/passwd", "../x", "a/../../x", "..", "a/./b", "a//b", "a/", "n\x00ul", "c\x1bt", "b\\s",
          "x" * 256, "é" * 128, "/".join(["d" * 255] * 17), "\ud800"]


@pytest.mark.parametrize("bad", UNSAFE)
def test_paths_that_would_escape_the_destination_or_fail_locally_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValidationError, match="unsafe path"):
        local_path(tmp_path, bad)


def test_a_safe_path_lands_under_the_destination(tmp_path: Path) -> None:
    assert local_path(tmp_path, "data/b/c.bin") == tmp_path / "data" / "b" / "c.bin"
    assert local_path(tmp_path, "x" * 255) == tmp_path / ("x" * 255)


def test_unsafe_entries_are_split_off_with_their_reason() -> None:
    entries = [TreeEntry(p, "file", 1, "f" * 40) for p in ["ok.bin", "../x", "a", "a/b", "x" * 256]]
    safe, skipped = split_unsafe(entries)
    assert [e.path for e in safe] == ["ok.bin", "a/b"]
    assert [s.path for s in skipped] == ["../x", "x" * 256, "a"]
    assert skipped[2] == Skipped("a", "the listing also has files under this path")
    assert "longer than 255 bytes" in skipped[1].reason
