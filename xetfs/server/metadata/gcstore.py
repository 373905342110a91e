"""The garbage collector's queries and transactions (SQLite or PostgreSQL); the algorithm is ``services.gc``.

Roots: the tree of EVERY stored commit of every existing repo (branch heads, tags, ``refs/pr/N``, and all
history: deleting a repo deletes its commits); with a retention of N commits, only the trees of the newest N
commits (first parents) of every ref. A file is live if a root names it or it was registered within
the grace period; a xorb is live if a live file's terms use it or it was stored within the grace period.

Deleting a xorb races with uploads that name it (a dedup answer given before the collection, a re-upload of
the same xorb), so it goes in three steps, each one transaction:

1. ``doom``: the xorb enters ``gc_doomed`` and leaves ``dedup_chunks`` (no new dedup answer names it), but only
   if no file references it any more. From now on ``check_shard_xorbs`` refuses a shard naming it and
   ``refuse_doomed`` refuses registering it again (503: retry after the collection).
2. ``drop_xorbs``: its index row goes, unless a file references it after all (then it is spared).
3. after the store objects are deleted, ``release``: the doomed rows go; an upload may bring it back.

Regular-file blobs (``blobs/<oid>``) have no index rows: the candidates are the blobs stored trees name (a
deleted repo's trees stay) minus those root trees name. ``doom_blobs`` enters them in ``gc_doomed_blobs`` unless
a commit made since the mark names them; while doomed, ``refuse_doomed_blobs`` turns away a commit adding one
(503); ``release_blobs`` ends it after the store objects are deleted.

``sweep_files`` deletes a dead file's rows unless a commit made since the mark began names it (read in the
sweep's transaction; commits are stamped before they are stored, hence a margin). The lock (``acquire``/``release_lock``) is a lease row in ``settings``: one
collector per database, across nodes.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from xetfs.errors import TransientError, ValidationError
from xetfs.server.metadata.database import Database, Tx
from xetfs.server.metadata.schema import decode_tree

__all__ = ["GcStore", "check_shard_xorbs", "refuse_doomed", "refuse_doomed_blobs"]

LOCK_KEY = "gc_lock"
BATCH = 500                          # rows per statement batch inside one transaction


def refuse_doomed(tx: Tx, xorbs: Sequence[str]) -> None:
    """Inside an upload's transaction: 503 if a xorb is being collected (the client retries after it)."""
    for x in xorbs:
        if tx.one("SELECT 1 FROM gc_doomed WHERE xorb_hash=?", (x,)) is not None:
            raise TransientError(f"xorb {x} is being garbage-collected; retry")


def refuse_doomed_blobs(tx: Tx, oids: Iterable[str]) -> None:
    """Inside a commit's transaction: 503 if a blob it adds is being collected (the client retries; the
    retry stores the blob again, after the collector is done)."""
    for oid in sorted(set(oids)):
        if tx.one("SELECT 1 FROM gc_doomed_blobs WHERE oid=?", (oid,)) is not None:
            raise TransientError(f"blob {oid} is being garbage-collected; retry")


def check_shard_xorbs(tx: Tx, xorbs: Iterable[str]) -> None:
    """Inside a shard's transaction: every xorb its files use is stored and not being collected."""
    for x in sorted(set(xorbs)):
        row = tx.one("SELECT (SELECT 1 FROM xorbs WHERE hash=?), (SELECT 1 FROM gc_doomed WHERE xorb_hash=?)", (x, x))
        if row[0] is None or row[1] is not None:
            raise ValidationError(f"shard references xorb {x}, which is not stored (garbage-collected): upload it again")


def _marks(items: Sequence[Any]) -> str:
    return ",".join("?" * len(items))


def _referenced(tx: Tx, xorbs: Sequence[str]) -> set[str]:
    """Those of ``xorbs`` some file still uses (one query per batch, not one per xorb)."""
    return {r[0] for r in tx.all(f"SELECT DISTINCT xorb_hash FROM file_xorbs WHERE xorb_hash IN ({_marks(xorbs)})",
                                 xorbs)}


def _batches(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), BATCH):
        yield items[i:i + BATCH]


class GcStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._tree_names: dict[str, tuple[frozenset[str], frozenset[str]]] = {}   # tree oid -> (files, blobs)

    def _named_since(self, tx: Tx, since: float) -> tuple[set[str], set[str]]:
        """(Xet files, blobs) named by the trees of commits made since ``since``, read in ``tx``. Trees are
        immutable, so each is decoded once per collection however many sweep batches ask (the commit list
        itself is read in every batch's transaction)."""
        files: set[str] = set()
        blobs: set[str] = set()
        for (oid,) in tx.all("SELECT DISTINCT tree FROM commits WHERE date >= ?", (since,)):
            names = self._tree_names.get(oid)
            if names is None:
                row = tx.one("SELECT data FROM trees WHERE oid=?", (oid,))
                tree = decode_tree(bytes(row[0])) if row is not None else {}
                names = (frozenset(e["xet"] for e in tree.values() if "xet" in e),
                         frozenset(e["oid"] for e in tree.values() if "xet" not in e))
                self._tree_names[oid] = names
            files |= names[0]
            blobs |= names[1]
        return files, blobs

    # ------------------------------------------------------------------ the lease
    def acquire(self, owner: str, ttl_s: float, now: float) -> bool:
        """Take the collector lease (free, expired, or already ours) -> True; another live holder -> False."""
        def take(tx: Tx) -> bool:
            value = f"{owner} {now + ttl_s!r}"
            if tx.execute("INSERT INTO settings VALUES (?,?) ON CONFLICT DO NOTHING", (LOCK_KEY, value)) == 1:
                return True
            old = tx.one("SELECT value FROM settings WHERE key=?", (LOCK_KEY,))[0]
            holder, _, until = str(old).rpartition(" ")
            if holder != owner and float(until) > now:
                return False
            return tx.execute("UPDATE settings SET value=? WHERE key=? AND value=?", (value, LOCK_KEY, old)) == 1
        return bool(self._db.write(take))

    def release_lock(self, owner: str) -> None:
        self._db.write(lambda tx: tx.execute("DELETE FROM settings WHERE key=? AND value LIKE ?", (LOCK_KEY, owner + " %")))

    # ------------------------------------------------------------------ mark
    def root_trees(self, keep_history: int | None) -> set[str]:
        """The trees of every commit of every existing repo (``keep_history`` None), or of the newest
        ``keep_history`` commits (first parents) of every ref."""
        if keep_history is None:
            return {r[0] for r in self._db.all("SELECT DISTINCT c.tree FROM commits c JOIN repos r ON r.id = c.repo")}
        trees: set[str] = set()
        seen: set[tuple[int, str]] = set()
        for repo, head in self._db.all("SELECT f.repo, f.commit_oid FROM refs f JOIN repos r ON r.id = f.repo"):
            oid: str | None = head
            for _ in range(keep_history):
                if oid is None or (repo, oid) in seen:
                    break
                seen.add((repo, oid))
                row = self._db.one("SELECT tree, parent FROM commits WHERE oid=? AND repo=?", (oid, repo))
                if row is None:
                    break
                trees.add(row[0])
                oid = row[1]
        return trees

    def root_files(self, keep_history: int | None = None) -> tuple[set[str], set[str]]:
        """(Xet files, regular-file blob oids) named by the root trees (``root_trees``)."""
        files: set[str] = set()
        blobs: set[str] = set()
        for oid in sorted(self.root_trees(keep_history)):
            row = self._db.one("SELECT data FROM trees WHERE oid=?", (oid,))
            if row is not None:
                for e in decode_tree(bytes(row[0])).values():
                    if "xet" in e:
                        files.add(e["xet"])
                    else:
                        blobs.add(e["oid"])
        return files, blobs

    def tree_blobs(self) -> dict[str, int]:
        """Every regular-file blob any stored tree names (a deleted repo's trees stay) -> its size. A blob
        stored by a commit that never landed is named by no tree, and stays."""
        out: dict[str, int] = {}
        for (data,) in self._db.all("SELECT data FROM trees"):
            out.update((e["oid"], int(e["size"])) for e in decode_tree(bytes(data)).values() if "xet" not in e)
        return out

    def files(self) -> list[tuple[str, bytes, float]]:
        return [(r[0], bytes(r[1]), float(r[2])) for r in self._db.all("SELECT hash, terms, created FROM files")]

    def xorbs(self) -> list[tuple[str, int, float]]:
        return [(r[0], int(r[1]), float(r[2])) for r in self._db.all("SELECT hash, stored_bytes, created FROM xorbs")]

    def shards(self) -> list[tuple[str, int, float]]:
        return [(r[0], int(r[1]), float(r[2])) for r in self._db.all("SELECT hash, size, created FROM shards")]

    def existing_files(self, hashes: Sequence[str]) -> set[str]:
        out: set[str] = set()
        for batch in _batches(hashes):
            out.update(r[0] for r in self._db.all(f"SELECT hash FROM files WHERE hash IN ({_marks(batch)})", batch))
        return out

    # ------------------------------------------------------------------ sweep
    def sweep_files(self, dead: Sequence[str], since: float) -> list[str]:
        """Delete the rows of dead files that no commit made after ``since`` (the mark's start, less a margin)
        names -> the files deleted."""
        gone: list[str] = []
        for batch in _batches(sorted(dead)):
            def sweep(tx: Tx, batch: Sequence[str] = batch) -> list[str]:
                recent = self._named_since(tx, since)[0]
                out = [f for f in batch if f not in recent]
                rows = [(f,) for f in out]
                for sql in ("DELETE FROM files WHERE hash=?", "DELETE FROM sha256_index WHERE file_hash=?",
                            "DELETE FROM file_xorbs WHERE file_hash=?", "DELETE FROM repo_uploads WHERE file_hash=?",
                            "DELETE FROM repo_files WHERE file_hash=?",
                            "UPDATE dedup_chunks SET file_hash=NULL WHERE file_hash=?"):
                    tx.executemany(sql, rows)
                return out
            gone += self._db.write(sweep)
        return gone

    def doom(self, dead: Sequence[str], now: float) -> list[str]:
        doomed: list[str] = []
        for batch in _batches(sorted(dead)):
            def mark(tx: Tx, batch: Sequence[str] = batch) -> list[str]:
                used = _referenced(tx, batch)
                out = [x for x in batch if x not in used]
                tx.executemany("INSERT INTO gc_doomed VALUES (?,?) ON CONFLICT DO NOTHING", [(x, now) for x in out])
                tx.executemany("DELETE FROM dedup_chunks WHERE xorb_hash=?", [(x,) for x in out])
                return out
            doomed += self._db.write(mark)
        return doomed

    def drop_xorbs(self, doomed: Sequence[str]) -> list[str]:
        dropped: list[str] = []
        for batch in _batches(sorted(doomed)):
            def drop(tx: Tx, batch: Sequence[str] = batch) -> list[str]:
                used = _referenced(tx, batch)
                free = [x for x in batch if x not in used]
                if not free:
                    return []
                rows = tx.all(f"DELETE FROM xorbs WHERE hash IN ({_marks(free)}) RETURNING hash", free)
                return sorted(r[0] for r in rows)
            dropped += self._db.write(drop)
        return dropped

    def release(self, doomed: Sequence[str]) -> None:
        for batch in _batches(sorted(doomed)):
            def free(tx: Tx, batch: Sequence[str] = batch) -> None:
                tx.executemany("DELETE FROM gc_doomed WHERE xorb_hash=?", [(x,) for x in batch])
            self._db.write(free)

    def doom_blobs(self, dead: Sequence[str], since: float, now: float) -> list[str]:
        """Mark dead blobs as being collected unless a commit made after ``since`` names them (read in the
        same transaction); from then on ``refuse_doomed_blobs`` turns away a commit adding one."""
        doomed: list[str] = []
        for batch in _batches(sorted(dead)):
            def mark(tx: Tx, batch: Sequence[str] = batch) -> list[str]:
                recent = self._named_since(tx, since)[1]
                out = [b for b in batch if b not in recent]
                tx.executemany("INSERT INTO gc_doomed_blobs VALUES (?,?) ON CONFLICT DO NOTHING", [(b, now) for b in out])
                return out
            doomed += self._db.write(mark)
        return doomed

    def release_blobs(self, doomed: Sequence[str]) -> None:
        for batch in _batches(sorted(doomed)):
            def free(tx: Tx, batch: Sequence[str] = batch) -> None:
                tx.executemany("DELETE FROM gc_doomed_blobs WHERE oid=?", [(b,) for b in batch])
            self._db.write(free)

    def drop_shard(self, shard: str) -> bool:
        return bool(self._db.write(lambda tx: tx.execute("DELETE FROM shards WHERE hash=?", (shard,))) == 1)
