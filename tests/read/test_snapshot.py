"""Revision snapshots (``xetfs.read.snapshot``): the format round-trips, any damaged byte is refused, a
snapshot is found by repo and revision (branch names with ``/`` included) and listed."""
from __future__ import annotations

from pathlib import Path

import pytest

from xetfs.client.config import RepoRef
from xetfs.core.hashing import MerkleHash
from xetfs.errors import FormatError
from xetfs.protocol.hub import TreeEntry
from xetfs.read.snapshot import (decode_snapshot, encode_snapshot, list_snapshots, load_snapshot, save_snapshot,
                                 snapshot_of, snapshot_path)

H = MerkleHash(bytes(range(32)))
ENTRIES = [TreeEntry("w/model.safetensors", "file", 1234, "ab" * 20, H, "cd" * 32),
           TreeEntry("w", "directory", 0, ""),
           TreeEntry("config.json", "file", 12, "ef" * 20)]


def test_roundtrip_and_damage() -> None:
    snap = snapshot_of(RepoRef("org/m", "dataset", "refs/pr/1"), "a" * 40, ENTRIES,
                       last_modified="2024-05-01T12:00:00.000Z", is_branch=True)
    data = encode_snapshot(snap)
    back = decode_snapshot(data)
    assert back.repo == snap.repo and back.commit == snap.commit and back.is_branch
    assert back.last_modified == snap.last_modified
    assert list(back.entries) == sorted(ENTRIES, key=lambda e: e.path)
    assert [e.path for e in back.xet_files()] == ["w/model.safetensors"]
    for i in range(0, len(data) - 1, 5):
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(FormatError):
            decode_snapshot(bytes(bad))


def test_save_load_list(tmp_path: Path) -> None:
    main = RepoRef("org/m", "model", "main")
    pr = main.at("refs/pr/7")
    assert load_snapshot(tmp_path, main) is None
    save_snapshot(tmp_path, snapshot_of(main, "1" * 40, ENTRIES))
    save_snapshot(tmp_path, snapshot_of(pr, "2" * 40, ENTRIES[:1]))
    save_snapshot(tmp_path, snapshot_of(main, "3" * 40, ENTRIES))      # replaced
    loaded = load_snapshot(tmp_path, main)
    assert loaded is not None and loaded.commit == "3" * 40
    assert snapshot_path(tmp_path, pr).name == "refs%2Fpr%2F7.snapshot"
    assert [(s.repo.revision, s.commit) for s in list_snapshots(tmp_path)] == [("main", "3" * 40),
                                                                            ("refs/pr/7", "2" * 40)]
    path = snapshot_path(tmp_path, main)
    path.write_bytes(path.read_bytes()[:-3])                              # damaged: as good as none
    assert load_snapshot(tmp_path, main) is None
    with pytest.raises(FormatError):
        snapshot_path(tmp_path, RepoRef("../x", "model", "main"))
