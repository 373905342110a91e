"""The server's metadata: CAS index, repos/refs/commits/snapshots, Hub tokens — in SQLite or PostgreSQL.

CAS index (docs/protocol.md):
- ``xorbs``: per stored xorb its serialized size and, packed, its chunk hashes (32 raw bytes each),
  uncompressed chunk sizes (u32) and serialized record offsets (u64, n + 1 values), so a reconstruction is
  planned without re-reading the xorb;
- ``files``: file hash -> terms (packed 44-byte records: raw xorb hash, chunk start, chunk end, unpacked
  bytes), size, sha256 (hex, recomputed by the server before it is stored: services.claims; indexed, Hub
  commits name Xet files by sha256); ``sha256_index``: sha256 hex -> the first file registered with it (kept
  for older readers; lookups use ``files``);
- ``dedup_chunks``: eligible chunk hash -> xorb hash (file-start chunks and ``hash % 1024 == 0``), and
  for a file-start chunk the file, so a dedup answer can list every xorb of that file;
- ``file_xorbs``: xorb hash -> the files whose terms reference it (a dedup answer's neighbours).

Repos: ``repos`` (type, repo_id), ``refs`` (branch -> commit oid), ``commits`` (oid, parent, tree oid,
title, message, date, author token id) and ``trees`` (tree oid -> zlib JSON snapshot ``{path: entry}``;
content-addressed, shared by commits). Tokens: ``tokens`` (id, sha256 of the secret, scope, repo).
``settings``: cluster-wide values (auth.py keeps the server secret there when the database is shared).

Repo binding of CAS reads (auth.py: a CAS token names one repo): ``repo_files`` (repo, file hash) lists every
Xet file that appears in some commit's tree of the repo, written in the same transaction as the commit;
``repo_uploads`` (repo, file hash) lists the files a shard registered under a CAS token of that repo, so an
uploader can read back (and commit) what it has not committed yet. ``file_reachable`` answers "may a token
of this repo read this file". Both tables are only added to; deleting a repo drops its rows.

The row types and the packed terms live in ``records``.

Backends (``database``, ``sqlite``, ``postgres``): ``Metadata(path)`` is SQLite (the embedded default), ``Metadata("postgresql://…")``
PostgreSQL, shared by every node of a cluster. Each query is written once here, in the dialect subset both
accept; the schema and its versioned migrations (run on open) live in ``schema``. Each write method
is ONE transaction, so a rejected or interrupted request leaves nothing behind. Moving a branch is a
compare-and-swap on ``refs`` inside the commit's transaction (``add_commit``): of two commits racing on one
branch — threads of one node or two nodes — exactly one wins and the other gets False (HTTP 412), never a
lost update. Rows are written in sorted order so concurrent transactions lock them in one order. Stored
objects are immutable, so xorb records and trees are cached in memory (safe with many nodes). Every method
is synchronous and short: the app calls them through ``asyncio.to_thread``.
"""
from __future__ import annotations

import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from xetfs.core.hashing import MerkleHash
from xetfs.errors import AlreadyExists, NotFound
from xetfs.server.metadata.connect import open_database
from xetfs.server.metadata.database import Database, Tx
from xetfs.server.metadata.records import (Commit, FileRecord, Repo, StoredTerm, TokenRecord, XorbRecord,
                                          pack_terms, unpack_terms)
from xetfs.server.metadata.gcstore import check_shard_xorbs, refuse_doomed, refuse_doomed_blobs
from xetfs.server.metadata.schema import SCHEMA_VERSION, decode_tree, encode_tree, index_tree, migrate

__all__ = ["SCHEMA_VERSION", "Commit", "FileRecord", "Metadata", "Repo", "StoredTerm", "TokenRecord",
           "XorbRecord", "pack_terms", "unpack_terms"]

Statement = tuple[str, Sequence[Any]]
_REPO_ROWS = ("refs", "commits", "repo_files", "repo_uploads", "discussions", "discussion_events", "repo_settings",
              "repo_redirects")                 # the tables whose rows belong to one repo (column ``repo``)


class _LRU(OrderedDict[str, Any]):
    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def get_item(self, key: str) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)


class Metadata:
    def __init__(self, target: Path | str | Database) -> None:
        """``target``: a SQLite file path, a ``postgresql://`` / ``sqlite:///`` URL, or an open Database.
        The schema is created or migrated here (``schema.migrate``)."""
        self._db = target if isinstance(target, Database) else open_database(target)
        self._lock = threading.Lock()           # guards the caches
        self._xorb_cache = _LRU(4096)
        self._tree_cache = _LRU(256)
        try:
            self.migrated_from, _ = migrate(self._db)
        except BaseException:
            self._db.close()
            raise

    @property
    def shared(self) -> bool:
        """Other nodes write this database too (PostgreSQL): cluster-wide state belongs in it."""
        return self._db.shared

    @property
    def database(self) -> Database:
        return self._db

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"Metadata({self._db!r})"

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._db.one(sql, args)

    def _write(self, statements: Sequence[Statement]) -> list[int]:
        """Run statements in ONE transaction; returns each statement's rowcount."""
        return self._db.write(lambda tx: [tx.execute(sql, args) for sql, args in statements])

    # ------------------------------------------------------------------ xorbs
    def add_xorb(self, rec: XorbRecord, dedup_chunks: Iterable[MerkleHash] = ()) -> bool:
        """Register a stored xorb (and its dedup-eligible chunks); False if it was already registered."""
        h = str(rec.hash)
        stmts: list[Statement] = [(
            "INSERT INTO xorbs VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (h, rec.stored_bytes, b"".join(rec.chunk_hashes), array("I", rec.chunk_sizes).tobytes(),
             array("Q", rec.chunk_offsets).tobytes(), time.time()))]
        stmts += [("INSERT INTO dedup_chunks VALUES (?,?,NULL) ON CONFLICT DO NOTHING", (c, h))
                  for c in sorted({str(c) for c in dedup_chunks})]

        def register(tx: Tx) -> bool:
            refuse_doomed(tx, [h])              # being garbage-collected: the client retries after it
            return [tx.execute(sql, args) for sql, args in stmts][0] == 1
        return self._db.write(register)

    def xorb(self, xorb_hash: MerkleHash) -> XorbRecord | None:
        key = str(xorb_hash)
        with self._lock:
            hit = self._xorb_cache.get_item(key)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        row = self._one("SELECT stored_bytes, chunk_hashes, chunk_sizes, chunk_offsets FROM xorbs WHERE hash=?",
                        (key,))
        if row is None:
            return None
        raw = bytes(row[1])
        hashes = tuple(MerkleHash(raw[i:i + 32]) for i in range(0, len(raw), 32))
        rec = XorbRecord(MerkleHash(bytes(xorb_hash)), int(row[0]), hashes,
                         tuple(array("I", bytes(row[2]))), tuple(array("Q", bytes(row[3]))))
        with self._lock:
            self._xorb_cache.put(key, rec)
        return rec

    def has_xorb(self, xorb_hash: MerkleHash) -> bool:
        """Asked of the database, not the cache: a garbage collector elsewhere may have dropped the xorb."""
        key = str(xorb_hash)
        if self._one("SELECT 1 FROM xorbs WHERE hash=?", (key,)) is not None:
            return True
        with self._lock:
            self._xorb_cache.pop(key, None)
        return False

    def dedup_entry(self, chunk: MerkleHash) -> tuple[MerkleHash | None, MerkleHash | None]:
        """-> (xorb holding ``chunk``, file that starts with it) for a global-dedup query."""
        row = self._one("SELECT xorb_hash, file_hash FROM dedup_chunks WHERE chunk_hash=?", (str(chunk),))
        if row is None:
            return None, None
        return MerkleHash.from_hex(row[0]), MerkleHash.from_hex(row[1]) if row[1] else None

    def files_with_xorb(self, xorb_hash: MerkleHash, limit: int) -> list[MerkleHash]:
        """Up to ``limit`` files whose terms reference ``xorb_hash``, the earliest registered first."""
        rows = self._db.all("SELECT fx.file_hash FROM file_xorbs fx JOIN files f ON f.hash = fx.file_hash "
                            "WHERE fx.xorb_hash=? ORDER BY f.created, fx.file_hash LIMIT ?", (str(xorb_hash), limit))
        return [MerkleHash.from_hex(r[0]) for r in rows]

    # ------------------------------------------------------------------ files and shards
    def add_shard(self, shard_hash: str, size: int, files: Sequence[FileRecord],
                  dedup_chunks: Sequence[tuple[MerkleHash, MerkleHash, MerkleHash]],
                  uploader_repo: int | None = None) -> bool:
        """Register one validated shard in one transaction; True if it added anything new. Its files become
        readable by CAS tokens of ``uploader_repo`` (the repo of the uploading token), committed or not."""
        now = time.time()
        stmts: list[Statement] = [("INSERT INTO shards VALUES (?,?,?) ON CONFLICT DO NOTHING",
                                   (shard_hash, size, now))]
        ordered = sorted(files, key=lambda f: bytes(f.hash))
        # a file's sha256 is verified before registration (services.claims), so a new one replaces a missing one
        stmts += [("INSERT INTO files VALUES (?,?,?,?,?) ON CONFLICT(hash) DO UPDATE SET sha256=excluded.sha256 "
                   "WHERE excluded.sha256 IS NOT NULL AND (files.sha256 IS NULL OR files.sha256 <> excluded.sha256)",
                   (str(f.hash), f.size, pack_terms(f.terms), f.sha256, now)) for f in ordered]
        stmts += [("INSERT INTO file_xorbs VALUES (?,?) ON CONFLICT DO NOTHING", (x, f))
                  for x, f in sorted({(str(t.xorb_hash), str(f.hash)) for f in ordered for t in f.terms})]
        if uploader_repo is not None:
            stmts += [("INSERT INTO repo_uploads VALUES (?,?) ON CONFLICT DO NOTHING", (uploader_repo, str(f.hash)))
                      for f in ordered]
        stmts += [("INSERT INTO sha256_index VALUES (?,?) ON CONFLICT DO NOTHING", (f.sha256, str(f.hash)))
                  for f in sorted(ordered, key=lambda f: f.sha256 or "") if f.sha256]
        stmts += [("INSERT INTO dedup_chunks VALUES (?,?,?) ON CONFLICT(chunk_hash) DO UPDATE "
                   "SET file_hash=excluded.file_hash WHERE dedup_chunks.file_hash IS NULL", (c, x, f))
                  for c, x, f in sorted({(str(c), str(x), str(f)) for c, x, f in dedup_chunks})]
        xorbs = {str(t.xorb_hash) for f in ordered for t in f.terms}

        def register(tx: Tx) -> list[int]:
            check_shard_xorbs(tx, xorbs)        # none swept or being swept by the garbage collector
            return [tx.execute(sql, args) for sql, args in stmts]
        counts = self._db.write(register)
        return any(c for (sql, _), c in zip(stmts, counts) if "repo_uploads" not in sql)

    def file(self, file_hash: MerkleHash) -> FileRecord | None:
        row = self._one("SELECT size, terms, sha256 FROM files WHERE hash=?", (str(file_hash),))
        if row is None:
            return None
        return FileRecord(MerkleHash(bytes(file_hash)), int(row[0]), unpack_terms(bytes(row[1])), row[2])

    def file_by_sha256(self, sha256_hex: str, readable_by: int | None = None) -> FileRecord | None:
        """The earliest registered file with this sha256; with ``readable_by``, only among the files a token of
        that repo may read (``file_reachable``). Several files can share a sha256: one content, chunked
        differently by different clients."""
        sha = sha256_hex.lower()
        if readable_by is None:
            row = self._one("SELECT hash FROM files WHERE sha256=? ORDER BY created, hash LIMIT 1", (sha,))
        else:
            row = self._one("SELECT f.hash FROM files f WHERE f.sha256=? AND (EXISTS (SELECT 1 FROM repo_files rf "
                            "WHERE rf.repo=? AND rf.file_hash=f.hash) OR EXISTS (SELECT 1 FROM repo_uploads ru "
                            "WHERE ru.repo=? AND ru.file_hash=f.hash)) ORDER BY f.created, f.hash LIMIT 1",
                            (sha, readable_by, readable_by))
        return self.file(MerkleHash.from_hex(row[0])) if row else None

    def file_reachable(self, repo: int | None, file_hash: MerkleHash) -> bool:
        """Is ``file_hash`` in some commit of ``repo`` or uploaded under a token of ``repo``?
        ``repo=None``: is it in some commit of a public repo (anonymous reads with ``--public-read``)."""
        h = str(file_hash)
        if repo is None:
            return self._one("SELECT 1 FROM repo_files rf JOIN repos r ON r.id = rf.repo "
                             "WHERE rf.file_hash=? AND r.private=0 LIMIT 1", (h,)) is not None
        return self._one("SELECT 1 FROM repo_files WHERE repo=? AND file_hash=? UNION ALL "
                         "SELECT 1 FROM repo_uploads WHERE repo=? AND file_hash=? LIMIT 1",
                         (repo, h, repo, h)) is not None

    # ------------------------------------------------------------------ tokens and settings
    def add_token(self, token_id: str, secret_hash: str, scope: str, repo: str | None) -> None:
        self._write([("INSERT INTO tokens VALUES (?,?,?,?,?)", (token_id, secret_hash, scope, repo, time.time()))])

    def delete_token(self, token_id: str, secret_hash: str) -> str | None:
        """Delete the Hub token with this id, or with this secret hash -> its id (None: no such token)."""
        row = self._one("SELECT id FROM tokens WHERE id=? OR secret_hash=?", (token_id, secret_hash))
        if row is None:
            return None
        self._write([("DELETE FROM tokens WHERE id=?", (row[0],))])
        return str(row[0])

    def token(self, secret_hash: str) -> TokenRecord | None:
        row = self._one("SELECT id, scope, repo FROM tokens WHERE secret_hash=?", (secret_hash,))
        return TokenRecord(*row) if row else None

    def setting(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key``; with ``default``, first store it if the key has none (one atomic
        get-or-create: of several nodes starting together, the first one's value wins for all)."""
        if default is None:
            row = self._one("SELECT value FROM settings WHERE key=?", (key,))
            return row[0] if row else None

        def get_or_create(tx: Tx) -> str:
            tx.execute("INSERT INTO settings VALUES (?,?) ON CONFLICT DO NOTHING", (key, default))
            return str(tx.one("SELECT value FROM settings WHERE key=?", (key,))[0])
        return self._db.write(get_or_create)

    # ------------------------------------------------------------------ repos, refs, commits, trees
    def create_repo(self, repo_type: str, repo_id: str, private: bool, first: Commit, tree: dict[str, Any]) -> Repo:
        def create(tx: Tx) -> int:
            rid = int(tx.one("INSERT INTO repos(type, repo_id, private, created) VALUES (?,?,?,?) RETURNING id",
                             (repo_type, repo_id, int(private), first.date))[0])
            self._insert_commit(tx, first, rid, tree)
            tx.execute("INSERT INTO refs VALUES (?,?,?)", (rid, "main", first.oid))
            return rid
        try:
            rid = self._db.write(create)
        except self._db.integrity_errors:
            raise AlreadyExists(f"{repo_type} repo {repo_id} already exists") from None
        return Repo(rid, repo_type, repo_id, private, first.date)

    def delete_repo(self, repo: Repo) -> None:
        """The repo and every row that names it (its trees stay: content-addressed and possibly shared)."""
        self._write([(f"DELETE FROM {t} WHERE repo=?", (repo.id,)) for t in _REPO_ROWS]
                    + [("DELETE FROM repos WHERE id=?", (repo.id,))])

    def repo(self, repo_type: str, repo_id: str) -> Repo | None:
        row = self._one("SELECT id, type, repo_id, private, created FROM repos WHERE type=? AND repo_id=?",
                        (repo_type, repo_id))
        if row is None:                 # a moved repo answers to its old names (metadata.repoadmin)
            row = self._one("SELECT r.id, r.type, r.repo_id, r.private, r.created FROM repo_redirects x "
                            "JOIN repos r ON r.id = x.repo WHERE x.type=? AND x.old_id=?", (repo_type, repo_id))
        return Repo(int(row[0]), row[1], row[2], bool(row[3]), row[4]) if row else None

    def repo_by_key(self, key: str) -> Repo | None:
        """The repo a CAS token names (``"{type}:{ns}/{name}"``, services.repos.repo_key)."""
        repo_type, sep, repo_id = key.partition(":")
        return self.repo(repo_type, repo_id) if sep else None

    def refs(self, repo: Repo) -> dict[str, str]:
        return dict(self._db.all("SELECT name, commit_oid FROM refs WHERE repo=? ORDER BY name", (repo.id,)))

    def commit(self, repo: Repo, oid: str) -> Commit | None:
        row = self._one("SELECT oid, repo, parent, tree, title, message, date, author FROM commits "
                        "WHERE oid=? AND repo=?", (oid, repo.id))
        return Commit(*row) if row else None

    def tree(self, oid: str) -> dict[str, Any]:
        with self._lock:
            hit = self._tree_cache.get_item(oid)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        row = self._one("SELECT data FROM trees WHERE oid=?", (oid,))
        if row is None:
            raise NotFound(f"tree {oid} missing")
        tree = decode_tree(bytes(row[0]))
        with self._lock:
            self._tree_cache.put(oid, tree)
        return tree

    @staticmethod
    def _insert_commit(tx: Tx, c: Commit, repo_id: int, tree: dict[str, Any]) -> None:
        tx.execute("INSERT INTO trees VALUES (?,?) ON CONFLICT DO NOTHING", (c.tree, encode_tree(tree)))
        tx.execute("INSERT INTO commits VALUES (?,?,?,?,?,?,?,?)",
                   (c.oid, repo_id, c.parent, c.tree, c.title, c.message, c.date, c.author))
        index_tree(tx, repo_id, tree)

    insert_commit = _insert_commit      # for another module's transaction (a pull request's merge commit)

    def add_commit(self, repo: Repo, branch: str, c: Commit, tree: dict[str, Any], blobs: Sequence[str] = ()) -> bool:
        """Store ``c`` and move ``branch`` to it iff the branch still points at ``c.parent``, in one
        transaction. The compare-and-swap comes first: a loser writes nothing, and in PostgreSQL a
        concurrent winner's row lock makes the loser wait, re-check the head and see it moved. ``blobs``:
        the regular-file blobs the commit adds (503 if the collector is deleting one)."""
        def swap(tx: Tx) -> bool:
            if c.parent is None or tx.execute("UPDATE refs SET commit_oid=? WHERE repo=? AND name=? AND commit_oid=?",
                                              (c.oid, repo.id, branch, c.parent)) != 1:
                return False
            refuse_doomed_blobs(tx, blobs)
            self._insert_commit(tx, c, repo.id, tree)
            return True
        return self._db.write(swap)

    def set_ref(self, repo: Repo, name: str, oid: str | None) -> None:
        if oid is None:
            self._write([("DELETE FROM refs WHERE repo=? AND name=?", (repo.id, name))])
        else:
            self._write([("INSERT INTO refs VALUES (?,?,?) ON CONFLICT(repo, name) DO UPDATE "
                          "SET commit_oid=excluded.commit_oid", (repo.id, name, oid))])

    def counts(self) -> dict[str, int]:
        return {t: int(self._one(f"SELECT count(*) FROM {t}")[0])
                for t in ("xorbs", "files", "shards", "repos", "commits", "dedup_chunks")}
