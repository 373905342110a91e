"""write.rebase: which pending changes collide with the branch, and which the head already holds."""
from __future__ import annotations

from xetfs.core.hashing import MerkleHash
from xetfs.protocol.hub import TreeEntry
from xetfs.write.journal import Deleted, HoldsBlob, HoldsXet
from xetfs.write.rebase import already_committed, conflicts, xet_file_of
from xetfs.write.staged import Change

XET = MerkleHash(bytes(range(32)))


def entry(path: str, oid: str, sha256: str | None = None) -> TreeEntry:
    return TreeEntry(path, "file", 10, oid, XET if sha256 else None, sha256)


def test_conflicts_are_the_paths_changed_on_both_sides() -> None:
    base = {"same": entry("same", "a"), "moved": entry("moved", "a"), "gone": entry("gone", "a"),
            "del-gone": entry("del-gone", "a")}
    head = {"same": entry("same", "a"), "moved": entry("moved", "b"), "new": entry("new", "c")}
    batch = {p: Change(gen=1, kind="put") for p in ("same", "moved", "gone", "new", "untouched")}
    batch["del-gone"] = Change(gen=1, kind="del")
    # "del-gone": deleted here and on the branch, the same outcome; "untouched": in neither tree
    assert conflicts(base, head, batch) == ["moved", "gone", "new"]


def test_already_committed_needs_an_intent_the_head_holds() -> None:
    head = {"x": entry("x", "o1", sha256="s" * 64), "r": entry("r", "o2")}
    batch = {"x": Change(gen=1, kind="put", intent=HoldsXet("s" * 64, 10)),
             "r": Change(gen=1, kind="put", intent=HoldsBlob("o2", 10)),
             "other-size": Change(gen=1, kind="put", intent=HoldsBlob("o2", 11)),
             "d": Change(gen=1, kind="del", intent=Deleted()),
             "no-intent": Change(gen=1, kind="put")}
    head["other-size"] = entry("other-size", "o2")
    assert already_committed(head, batch) == ["x", "r", "d"]


def test_xet_file_of_a_tree_entry() -> None:
    xet = xet_file_of(entry("x", "o", sha256="s" * 64))
    assert xet is not None and (xet.file_hash, xet.sha256, xet.size) == (XET, "s" * 64, 10)
    assert xet_file_of(entry("r", "o")) is None and xet_file_of(None) is None
