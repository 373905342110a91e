"""Unit tests of the server's stores: the storage conformance suite on LocalStorage, and the SQLite
metadata (CAS index, transactions, commits racing on a branch, tokens)."""
from __future__ import annotations

import os
import sqlite3

import pytest

from xetfs.core.hashing import MerkleHash
from xetfs.errors import AlreadyExists
from xetfs.server.auth import create_hub_token, hash_token
from xetfs.server.services.commits import make_commit
from xetfs.server.metadata.store import FileRecord, Metadata, StoredTerm, XorbRecord
from xetfs.server.stores.local import LocalStorage
from xetfs.testing.server import check_storage_contract


def test_local_storage_contract(tmp_path):
    check_storage_contract(LocalStorage(tmp_path / "objects"))


def test_local_storage_cleans_temp_files_left_by_a_crash(tmp_path):
    store = LocalStorage(tmp_path)
    (tmp_path / "xorbs").mkdir()
    (tmp_path / "xorbs" / ".abc.1234.tmp").write_bytes(b"half")
    assert store.cleanup_temp() == 1
    assert os.listdir(tmp_path / "xorbs") == []


def _h(n: int) -> MerkleHash:
    return MerkleHash(bytes([n]) * 32)


def test_xorb_and_file_index(tmp_path):
    meta = Metadata(tmp_path / "m.db")
    rec = XorbRecord(_h(1), 1234, (_h(2), _h(3)), (100, 200), (0, 50, 1234))
    assert meta.add_xorb(rec, [_h(3)]) is True
    assert meta.add_xorb(rec) is False
    meta.close()
    meta = Metadata(tmp_path / "m.db")                       # persisted, re-read from SQLite
    assert meta.xorb(_h(1)) == rec and meta.xorb(_h(9)) is None
    assert meta.dedup_entry(_h(3))[0] == _h(1)
    f = FileRecord(_h(4), 300, (StoredTerm(_h(1), 0, 2, 300),), "ab" * 32)
    assert meta.add_shard("s1", 100, [f], [(_h(2), _h(1), _h(4)), (_h(3), _h(1), _h(4))]) is True
    assert meta.add_shard("s1", 100, [f], [(_h(2), _h(1), _h(4))]) is False
    assert meta.file(_h(4)) == f and meta.file_by_sha256("AB" * 32) == f
    assert meta.dedup_entry(_h(2)) == (_h(1), _h(4))
    assert meta.dedup_entry(_h(3)) == (_h(1), _h(4))      # indexed by the xorb first, file added later


def test_shard_registration_is_one_transaction(tmp_path):
    meta = Metadata(tmp_path / "m.db")
    good = FileRecord(_h(4), 1, (), None)
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):    # the 2nd file fails inside the transaction
        meta.add_shard("s1", 1, [good, FileRecord(_h(5), None, (), None)], [])  # type: ignore[arg-type]
    assert meta.file(_h(4)) is None and meta.counts()["shards"] == 0


def test_commits_race_on_a_branch(tmp_path):
    meta = Metadata(tmp_path / "m.db")
    first = make_commit("model:t/r", None, {}, "initial", "", "admin")
    repo = meta.create_repo("model", "t/r", False, first, {})
    with pytest.raises(AlreadyExists):
        meta.create_repo("model", "t/r", False, first, {})
    tree_a = {"a.txt": {"size": 1, "oid": "x"}}
    a = make_commit("model:t/r", first.oid, tree_a, "a", "", "admin")
    b = make_commit("model:t/r", first.oid, {"b.txt": {"size": 1, "oid": "y"}}, "b", "", "admin")
    assert meta.add_commit(repo, "main", a, tree_a) is True
    assert meta.add_commit(repo, "main", b, {}) is False          # parent is no longer the head
    assert meta.refs(repo) == {"main": a.oid}
    assert meta.tree(meta.commit(repo, a.oid).tree) == tree_a    # type: ignore[union-attr]
    meta.delete_repo(repo)
    assert meta.repo("model", "t/r") is None


def test_tokens_are_stored_hashed(tmp_path):
    meta = Metadata(tmp_path / "m.db")
    token_id, token = create_hub_token(meta, "read", "t/r")
    rec = meta.token(hash_token(token))
    assert rec is not None and (rec.id, rec.scope, rec.repo) == (token_id, "read", "t/r")
    assert token.encode() not in (tmp_path / "m.db").read_bytes()
    with pytest.raises(ValueError):
        create_hub_token(meta, "admin", None)
