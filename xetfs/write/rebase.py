"""The writeback's decisions when the branch head is not its base (docs/architecture.md, "The write path"):
which pending changes the head already holds (committed before a crash or a lost answer) and which collide
with a change made on the branch. Pure functions over tree listings; ``Writeback`` does the I/O and the
journaling.
"""
from __future__ import annotations

from collections.abc import Mapping

from xetfs.protocol.hub import TreeEntry
from xetfs.write.journal import matches
from xetfs.write.staged import Change
from xetfs.write.session import XetFile

Tree = Mapping[str, TreeEntry]      # path -> file entry of one commit


def already_committed(head: Tree, batch: Mapping[str, Change]) -> list[str]:
    """The paths of ``batch`` whose journaled intent the head already holds: done, never committed twice."""
    return [p for p, c in batch.items() if c.intent is not None and matches(c.intent, head.get(p))]


def conflicts(base: Tree, head: Tree, batch: Mapping[str, Change]) -> list[str]:
    """The paths of ``batch`` that also changed between ``base`` and ``head`` (a delete of a path the head
    no longer has is no conflict); every other change applies to ``head`` as it is."""
    return [p for p, c in batch.items()
            if _oid(base.get(p)) != _oid(head.get(p)) and not (c.kind == "del" and p not in head)]


def xet_file_of(entry: TreeEntry | None) -> XetFile | None:
    """What the VFS needs to show a committed Xet file, from its tree entry (None for a regular file)."""
    if entry is None or entry.xet_hash is None or not entry.sha256:
        return None
    return XetFile(entry.xet_hash, entry.sha256, entry.size)


def _oid(entry: TreeEntry | None) -> str | None:
    return entry.oid if entry is not None else None
