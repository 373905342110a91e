"""Repo administration in the metadata database: listings, settings, moves, tags and squashes.

- ``listing``: the repos of one type with their ``main`` head (oid and date), filtered by author (namespace)
  and a case-insensitive substring of the id, in SQL; sorting and paging are the caller's (``services.admin``).
- ``set_private`` / ``setting`` / ``set_setting``: ``repos.private`` and ``repo_settings`` (``gated``).
- ``move``: renames the repo and records the old name in ``repo_redirects`` (``Metadata.repo`` follows it), in
  one transaction; a name already taken is AlreadyExists.
- ``create_ref`` (a tag: insert-only) and ``squash`` (a root commit replacing a branch's history).

Synchronous and short: routes call these through ``State.run``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xetfs.errors import AlreadyExists, Conflict
from xetfs.server.metadata.database import Database, Tx
from xetfs.server.metadata.store import Commit, Metadata, Repo

__all__ = ["ListedRepo", "RepoAdmin"]


@dataclass(frozen=True, slots=True)
class ListedRepo:
    repo: Repo
    sha: str | None
    last_modified: float


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class RepoAdmin:
    def __init__(self, db: Database) -> None:
        self._db = db

    def listing(self, repo_type: str, author: str | None, search: str | None) -> list[ListedRepo]:
        sql = ("SELECT r.id, r.type, r.repo_id, r.private, r.created, c.oid, c.date FROM repos r "
               "LEFT JOIN refs f ON f.repo = r.id AND f.name = 'main' LEFT JOIN commits c ON c.oid = f.commit_oid "
               "WHERE r.type = ?")
        args: list[Any] = [repo_type]
        if author:
            sql += " AND r.repo_id LIKE ? ESCAPE '\\'"
            args.append(_like_escape(author) + "/%")
        if search:
            sql += " AND lower(r.repo_id) LIKE ? ESCAPE '\\'"
            args.append("%" + _like_escape(search.lower()) + "%")
        rows = self._db.all(sql + " ORDER BY r.repo_id", args)
        return [ListedRepo(Repo(int(r[0]), r[1], r[2], bool(r[3]), float(r[4])), r[5],
                           float(r[6]) if r[6] is not None else float(r[4])) for r in rows]

    def set_private(self, repo: Repo, private: bool) -> None:
        self._db.write(lambda tx: tx.execute("UPDATE repos SET private=? WHERE id=?", (int(private), repo.id)))

    def setting(self, repo: Repo, key: str) -> str | None:
        row = self._db.one("SELECT value FROM repo_settings WHERE repo=? AND key=?", (repo.id, key))
        return str(row[0]) if row else None

    def set_setting(self, repo: Repo, key: str, value: str) -> None:
        self._db.write(lambda tx: tx.execute(
            "INSERT INTO repo_settings VALUES (?,?,?) ON CONFLICT(repo, key) DO UPDATE SET value=excluded.value",
            (repo.id, key, value)))

    def move(self, repo: Repo, new_id: str) -> None:
        def move(tx: Tx) -> None:
            if tx.one("SELECT 1 FROM repos WHERE type=? AND repo_id=?", (repo.type, new_id)) is not None:
                raise AlreadyExists(f"{repo.type} repo {new_id} already exists")
            tx.execute("DELETE FROM repo_redirects WHERE type=? AND old_id=?", (repo.type, new_id))
            tx.execute("UPDATE repos SET repo_id=? WHERE id=?", (new_id, repo.id))
            tx.execute("INSERT INTO repo_redirects VALUES (?,?,?) ON CONFLICT(type, old_id) DO UPDATE "
                       "SET repo=excluded.repo", (repo.type, repo.repo_id, repo.id))
        self._db.write(move)

    def create_ref(self, repo: Repo, name: str, oid: str) -> None:
        """A new ref (a tag); AlreadyExists if the name is taken."""
        try:
            self._db.write(lambda tx: tx.execute("INSERT INTO refs VALUES (?,?,?)", (repo.id, name, oid)))
        except self._db.integrity_errors:
            raise AlreadyExists(f"{name} already exists") from None

    def squash(self, repo: Repo, branch: str, old_oid: str, root: Commit, tree: dict[str, Any]) -> None:
        """Point ``branch`` at ``root`` (a commit without parent holding ``tree``) iff it still points at
        ``old_oid``; the old commits stay stored (other refs, pull requests and the gc's history see them)."""
        def swap(tx: Tx) -> None:
            if tx.execute("UPDATE refs SET commit_oid=? WHERE repo=? AND name=? AND commit_oid=?",
                          (root.oid, repo.id, branch, old_oid)) != 1:
                raise Conflict(f"branch {branch} moved during the squash; retry")
            Metadata.insert_commit(tx, root, repo.id, tree)
        self._db.write(swap)
