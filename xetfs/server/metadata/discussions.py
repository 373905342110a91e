"""Discussions and pull requests of a repo, with their events, in the metadata database (SQLite or PostgreSQL).

Tables (``schema``, migration 4): ``discussions`` (repo, num -> is_pr, title, status, author, created, target
branch, merge commit) and ``discussion_events`` (repo, num, seq -> type, author, created, JSON data). Numbers
are per repo and start at 1, as on the Hub; a pull request's head is the ref ``refs/pr/{num}`` in ``refs``,
created in the same transaction as the pull request. Every write method is one transaction; two nodes that
open a discussion at once both succeed with different numbers (the loser of the primary key re-runs).

Synchronous and short: routes call these through ``State.run``.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xetfs.errors import NotFound
from xetfs.server.metadata.database import Database, Tx

__all__ = ["Discussion", "DiscussionStore", "Event", "PR_REF_PREFIX", "pr_ref"]

PR_REF_PREFIX = "refs/pr/"
_NUMBER_ATTEMPTS = 8                 # concurrent creations racing for one number


def pr_ref(num: int) -> str:
    return f"{PR_REF_PREFIX}{num}"


@dataclass(frozen=True, slots=True)
class Discussion:
    repo: int
    num: int
    is_pr: bool
    title: str
    status: str                      # open | closed | merged | draft
    author: str | None
    created: float
    target: str | None               # the branch a pull request merges into
    merge_commit: str | None


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    type: str                        # comment | status-change | commit | title-change
    author: str | None
    created: float
    data: dict[str, Any]


_COLS = "repo, num, is_pr, title, status, author, created, target, merge_commit"


def _row(row: Any) -> Discussion:
    return Discussion(int(row[0]), int(row[1]), bool(row[2]), row[3], row[4], row[5], float(row[6]), row[7], row[8])


def _add_event(tx: Tx, repo: int, num: int, kind: str, author: str | None, data: dict[str, Any]) -> Event:
    seq = int(tx.one("SELECT coalesce(max(seq), 0) + 1 FROM discussion_events WHERE repo=? AND num=?",
                     (repo, num))[0])
    now = time.time()
    tx.execute("INSERT INTO discussion_events VALUES (?,?,?,?,?,?,?)",
               (repo, num, seq, kind, author, now, json.dumps(data, sort_keys=True)))
    return Event(seq, kind, author, now, data)


class DiscussionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, repo: int, is_pr: bool, title: str, author: str | None, target: str | None,
               head_oid: str | None, events: list[tuple[str, dict[str, Any]]], status: str = "open") -> Discussion:
        """Open discussion number max+1 with its first events; a pull request also gets ``refs/pr/{num}`` ->
        ``head_oid`` (the target's head: the pull request starts with no changes). ``status``: ``open``, or
        ``draft`` for a pull request opened empty (the Hub's status for those until they are published)."""
        def create(tx: Tx) -> Discussion:
            num = int(tx.one("SELECT coalesce(max(num), 0) + 1 FROM discussions WHERE repo=?", (repo,))[0])
            now = time.time()
            tx.execute(f"INSERT INTO discussions({_COLS}) VALUES (?,?,?,?,?,?,?,?,?)",
                       (repo, num, int(is_pr), title, status, author, now, target, None))
            if is_pr:
                tx.execute("INSERT INTO refs VALUES (?,?,?)", (repo, pr_ref(num), head_oid))
            for kind, data in events:
                _add_event(tx, repo, num, kind, author, data)
            return Discussion(repo, num, is_pr, title, status, author, now, target, None)
        for attempt in range(_NUMBER_ATTEMPTS):
            try:
                return self._db.write(create)
            except self._db.integrity_errors:
                if attempt == _NUMBER_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def discard(self, repo: int, num: int) -> None:
        """Remove a pull request whose first commit failed (its ref, events and row)."""
        self._db.write(lambda tx: [tx.execute("DELETE FROM refs WHERE repo=? AND name=?", (repo, pr_ref(num))),
                                   tx.execute("DELETE FROM discussion_events WHERE repo=? AND num=?", (repo, num)),
                                   tx.execute("DELETE FROM discussions WHERE repo=? AND num=?", (repo, num))])

    def get(self, repo: int, num: int) -> Discussion:
        row = self._db.one(f"SELECT {_COLS} FROM discussions WHERE repo=? AND num=?", (repo, num))
        if row is None:
            raise NotFound(f"discussion {num} not found")
        return _row(row)

    def all(self, repo: int) -> list[Discussion]:
        """Every discussion of ``repo``, the newest first (as the Hub lists them)."""
        rows = self._db.all(f"SELECT {_COLS} FROM discussions WHERE repo=? ORDER BY num DESC", (repo,))
        return [_row(r) for r in rows]

    def events(self, repo: int, num: int) -> list[Event]:
        rows = self._db.all("SELECT seq, type, author, created, data FROM discussion_events "
                            "WHERE repo=? AND num=? ORDER BY seq", (repo, num))
        return [Event(int(r[0]), r[1], r[2], float(r[3]), json.loads(r[4])) for r in rows]

    def add_event(self, repo: int, num: int, kind: str, author: str | None, data: dict[str, Any], *,
                  status: str | None = None, title: str | None = None) -> Event:
        """Append an event; ``status`` / ``title`` also change the discussion, in the same transaction."""
        def add(tx: Tx) -> Event:
            if tx.one("SELECT 1 FROM discussions WHERE repo=? AND num=?", (repo, num)) is None:
                raise NotFound(f"discussion {num} not found")
            if status is not None:
                tx.execute("UPDATE discussions SET status=? WHERE repo=? AND num=?", (status, repo, num))
            if title is not None:
                tx.execute("UPDATE discussions SET title=? WHERE repo=? AND num=?", (title, repo, num))
            return _add_event(tx, repo, num, kind, author, data)
        return self._db.write(add)

    def merged(self, repo: int, num: int, target: str, old_oid: str, new_oid: str, author: str | None,
               insert: Callable[[Tx], None] | None = None) -> bool:
        """Move ``target`` from ``old_oid`` to ``new_oid`` (compare-and-swap; ``insert(tx)`` first stores a
        merge commit) and mark the pull request merged, in one transaction. False if the target moved."""
        def merge(tx: Tx) -> bool:
            if tx.execute("UPDATE refs SET commit_oid=? WHERE repo=? AND name=? AND commit_oid=?",
                          (new_oid, repo, target, old_oid)) != 1:
                return False
            if insert is not None:
                insert(tx)
            tx.execute("UPDATE discussions SET status='merged', merge_commit=? WHERE repo=? AND num=?",
                       (new_oid, repo, num))
            _add_event(tx, repo, num, "status-change", author, {"status": "merged"})
            return True
        return bool(self._db.write(merge))
