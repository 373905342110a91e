"""The server's metadata in SQLite (WAL): CAS index, repos/refs/commits/snapshots, Hub tokens.

CAS index (shared/xet-protocol.md §6.4, §7.3):
- ``xorbs``: per stored xorb its serialized size and, packed, its chunk hashes (32 raw bytes each),
  uncompressed chunk sizes (u32) and serialized record offsets (u64, n + 1 values), so a reconstruction is
  planned without re-reading the xorb;
- ``files``: file hash -> terms (packed 44-byte records: raw xorb hash, chunk start, chunk end, unpacked
  bytes), size, sha256 (hex); ``sha256_index``: sha256 hex -> file hash (Hub commits name Xet files by sha256,
  hub-api.md §5);
- ``dedup_chunks``: eligible chunk hash -> xorb hash (file-start chunks and ``hash % 1024 == 0``, §6.2), and
  for a file-start chunk the file, so a dedup answer can list every xorb of that file.

Repos: ``repos`` (type, repo_id), ``refs`` (branch -> commit oid), ``commits`` (oid, parent, tree oid,
title, message, date, author token id) and ``trees`` (tree oid -> zlib JSON snapshot ``{path: entry}``;
content-addressed, shared by commits). Tokens: ``tokens`` (id, sha256 of the secret, scope, repo).

Repo binding of CAS reads (auth.py: a CAS token names one repo): ``repo_files`` (repo, file hash) lists every
Xet file that appears in some commit's tree of the repo, written in the same transaction as the commit;
``repo_uploads`` (repo, file hash) lists the files a shard registered under a CAS token of that repo, so an
uploader can read back (and commit) what it has not committed yet. ``file_reachable`` answers "may a token
of this repo read this file". Both tables are only added to; deleting a repo drops its rows. A database made
before these tables existed is backfilled from its commits' trees when it is opened (``_migrate``,
``PRAGMA user_version`` 0 -> 1).

One connection, one lock; every method is synchronous and short: the app calls them through
``asyncio.to_thread``. Each write method is ONE transaction, so a rejected or interrupted request leaves
nothing behind. Stored objects are immutable, so xorb records and trees are cached in memory.
"""
from __future__ import annotations

import json
import sqlite3
import struct
import threading
import time
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xetfs.core.hashing import MerkleHash
from xetfs.errors import AlreadyExists, NotFound

_SCHEMA = """
CREATE TABLE IF NOT EXISTS xorbs(hash TEXT PRIMARY KEY, stored_bytes INTEGER NOT NULL,
    chunk_hashes BLOB NOT NULL, chunk_sizes BLOB NOT NULL, chunk_offsets BLOB NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS files(hash TEXT PRIMARY KEY, size INTEGER NOT NULL, terms BLOB NOT NULL,
    sha256 TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sha256_index(sha256 TEXT PRIMARY KEY, file_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dedup_chunks(chunk_hash TEXT PRIMARY KEY, xorb_hash TEXT NOT NULL, file_hash TEXT);
CREATE TABLE IF NOT EXISTS shards(hash TEXT PRIMARY KEY, size INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens(id TEXT PRIMARY KEY, secret_hash TEXT UNIQUE NOT NULL, scope TEXT NOT NULL,
    repo TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS repos(id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, repo_id TEXT NOT NULL,
    private INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, UNIQUE(type, repo_id));
CREATE TABLE IF NOT EXISTS refs(repo INTEGER NOT NULL, name TEXT NOT NULL, commit_oid TEXT NOT NULL,
    PRIMARY KEY(repo, name));
CREATE TABLE IF NOT EXISTS commits(oid TEXT PRIMARY KEY, repo INTEGER NOT NULL, parent TEXT, tree TEXT NOT NULL,
    title TEXT NOT NULL, message TEXT NOT NULL, date REAL NOT NULL, author TEXT);
CREATE TABLE IF NOT EXISTS trees(oid TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS repo_files(repo INTEGER NOT NULL, file_hash TEXT NOT NULL,
    PRIMARY KEY(repo, file_hash)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS repo_files_by_file ON repo_files(file_hash);
CREATE TABLE IF NOT EXISTS repo_uploads(repo INTEGER NOT NULL, file_hash TEXT NOT NULL,
    PRIMARY KEY(repo, file_hash)) WITHOUT ROWID;
"""

SCHEMA_VERSION = 1                      # 1: repo_files backfilled from existing commits
_TERM = struct.Struct("<32sIII")


@dataclass(frozen=True, slots=True)
class XorbRecord:
    hash: MerkleHash
    stored_bytes: int
    chunk_hashes: tuple[MerkleHash, ...]
    chunk_sizes: tuple[int, ...]
    chunk_offsets: tuple[int, ...]      # n + 1 values; the last is the serialized length


@dataclass(frozen=True, slots=True)
class StoredTerm:                       # fits core.reconstruction.TermLike
    xorb_hash: MerkleHash
    chunk_start: int
    chunk_end: int
    unpacked_bytes: int


@dataclass(frozen=True, slots=True)
class FileRecord:
    hash: MerkleHash
    size: int
    terms: tuple[StoredTerm, ...]
    sha256: str | None


@dataclass(frozen=True, slots=True)
class Repo:
    id: int
    type: str
    repo_id: str
    private: bool
    created: float


@dataclass(frozen=True, slots=True)
class Commit:
    oid: str
    repo: int
    parent: str | None
    tree: str
    title: str
    message: str
    date: float
    author: str | None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    scope: str
    repo: str | None


def pack_terms(terms: Iterable[StoredTerm]) -> bytes:
    return b"".join(_TERM.pack(bytes(t.xorb_hash), t.chunk_start, t.chunk_end, t.unpacked_bytes) for t in terms)


def unpack_terms(blob: bytes) -> tuple[StoredTerm, ...]:
    return tuple(StoredTerm(MerkleHash(h), s, e, n) for h, s, e, n in _TERM.iter_unpack(blob))


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
    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._xorb_cache = _LRU(4096)
        self._tree_cache = _LRU(256)
        self._migrate()

    def _migrate(self) -> None:
        """Schema version 1 (``PRAGMA user_version``) = ``repo_files`` filled: backfill it from every stored
        commit (a database from before repo binding; a no-op on a fresh one). One transaction that also bumps
        the version, so an interrupted backfill is redone on the next open and two openers do it once."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    rows = self._db.execute("SELECT DISTINCT c.repo, t.data FROM commits c "
                                            "JOIN trees t ON t.oid = c.tree JOIN repos r ON r.id = c.repo").fetchall()
                    for repo, data in rows:
                        self._index_tree(repo, json.loads(zlib.decompress(data)))
                    self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _write(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run statements in ONE transaction; returns each statement's rowcount."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                counts = [self._db.execute(sql, args).rowcount for sql, args in statements]
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return counts

    # ------------------------------------------------------------------ xorbs
    def add_xorb(self, rec: XorbRecord, dedup_chunks: Iterable[MerkleHash] = ()) -> bool:
        """Register a stored xorb (and its dedup-eligible chunks); False if it was already registered."""
        h = str(rec.hash)
        stmts: list[tuple[str, Sequence[Any]]] = [(
            "INSERT OR IGNORE INTO xorbs VALUES (?,?,?,?,?,?)",
            (h, rec.stored_bytes, b"".join(rec.chunk_hashes), array("I", rec.chunk_sizes).tobytes(),
             array("Q", rec.chunk_offsets).tobytes(), time.time()))]
        stmts += [("INSERT OR IGNORE INTO dedup_chunks VALUES (?,?,NULL)", (str(c), h)) for c in dedup_chunks]
        return self._write(stmts)[0] == 1

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
        hashes = tuple(MerkleHash(row[1][i:i + 32]) for i in range(0, len(row[1]), 32))
        rec = XorbRecord(MerkleHash(bytes(xorb_hash)), row[0], hashes,
                         tuple(array("I", row[2])), tuple(array("Q", row[3])))
        with self._lock:
            self._xorb_cache.put(key, rec)
        return rec

    def has_xorb(self, xorb_hash: MerkleHash) -> bool:
        return self.xorb(xorb_hash) is not None

    def dedup_xorb(self, chunk: MerkleHash) -> MerkleHash | None:
        return self.dedup_entry(chunk)[0]

    def dedup_entry(self, chunk: MerkleHash) -> tuple[MerkleHash | None, MerkleHash | None]:
        """-> (xorb holding ``chunk``, file that starts with it) for a global-dedup query (§6.3)."""
        row = self._one("SELECT xorb_hash, file_hash FROM dedup_chunks WHERE chunk_hash=?", (str(chunk),))
        if row is None:
            return None, None
        return MerkleHash.from_hex(row[0]), MerkleHash.from_hex(row[1]) if row[1] else None

    # ------------------------------------------------------------------ files and shards
    def add_shard(self, shard_hash: str, size: int, files: Sequence[FileRecord],
                  dedup_chunks: Sequence[tuple[MerkleHash, MerkleHash, MerkleHash]],
                  uploader_repo: int | None = None) -> bool:
        """Register one validated shard in one transaction; True if it added anything new. Its files become
        readable by CAS tokens of ``uploader_repo`` (the repo of the uploading token), committed or not."""
        now = time.time()
        stmts: list[tuple[str, Sequence[Any]]] = [
            ("INSERT OR IGNORE INTO shards VALUES (?,?,?)", (shard_hash, size, now))]
        for f in files:
            stmts.append(("INSERT OR IGNORE INTO files VALUES (?,?,?,?,?)",
                          (str(f.hash), f.size, pack_terms(f.terms), f.sha256, now)))
            if uploader_repo is not None:
                stmts.append(("INSERT OR IGNORE INTO repo_uploads VALUES (?,?)", (uploader_repo, str(f.hash))))
            if f.sha256:
                stmts.append(("INSERT OR IGNORE INTO sha256_index VALUES (?,?)", (f.sha256, str(f.hash))))
        stmts += [("INSERT INTO dedup_chunks VALUES (?,?,?) ON CONFLICT(chunk_hash) DO UPDATE "
                   "SET file_hash=excluded.file_hash WHERE file_hash IS NULL", (str(c), str(x), str(f)))
                  for c, x, f in dedup_chunks]
        counts = self._write(stmts)
        return counts[0] == 1 or any(c for (sql, _), c in zip(stmts[1:], counts[1:]) if "repo_uploads" not in sql)

    def file(self, file_hash: MerkleHash) -> FileRecord | None:
        row = self._one("SELECT size, terms, sha256 FROM files WHERE hash=?", (str(file_hash),))
        if row is None:
            return None
        return FileRecord(MerkleHash(bytes(file_hash)), row[0], unpack_terms(row[1]), row[2])

    def file_by_sha256(self, sha256_hex: str) -> FileRecord | None:
        row = self._one("SELECT file_hash FROM sha256_index WHERE sha256=?", (sha256_hex.lower(),))
        return self.file(MerkleHash.from_hex(row[0])) if row else None

    def file_reachable(self, repo: int | None, file_hash: MerkleHash) -> bool:
        """Is ``file_hash`` in some commit of ``repo`` or uploaded under a token of ``repo``?
        ``repo=None``: is it in some commit of any repo (anonymous reads with ``--public-read``)."""
        h = str(file_hash)
        if repo is None:
            return self._one("SELECT 1 FROM repo_files WHERE file_hash=? LIMIT 1", (h,)) is not None
        return self._one("SELECT 1 FROM repo_files WHERE repo=? AND file_hash=? UNION ALL "
                         "SELECT 1 FROM repo_uploads WHERE repo=? AND file_hash=? LIMIT 1",
                         (repo, h, repo, h)) is not None

    # ------------------------------------------------------------------ tokens
    def add_token(self, token_id: str, secret_hash: str, scope: str, repo: str | None) -> None:
        self._write([("INSERT INTO tokens VALUES (?,?,?,?,?)", (token_id, secret_hash, scope, repo, time.time()))])

    def token(self, secret_hash: str) -> TokenRecord | None:
        row = self._one("SELECT id, scope, repo FROM tokens WHERE secret_hash=?", (secret_hash,))
        return TokenRecord(*row) if row else None

    # ------------------------------------------------------------------ repos, refs, commits, trees
    def create_repo(self, repo_type: str, repo_id: str, private: bool, first: Commit, tree: dict[str, Any]) -> Repo:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute("INSERT INTO repos(type, repo_id, private, created) VALUES (?,?,?,?)",
                                       (repo_type, repo_id, int(private), first.date))
                rid = int(cur.lastrowid or 0)
                self._insert_commit(first, rid, tree)
                self._db.execute("INSERT INTO refs VALUES (?,?,?)", (rid, "main", first.oid))
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                raise AlreadyExists(f"{repo_type} repo {repo_id} already exists") from None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return Repo(rid, repo_type, repo_id, private, first.date)

    def delete_repo(self, repo: Repo) -> None:
        self._write([("DELETE FROM refs WHERE repo=?", (repo.id,)), ("DELETE FROM commits WHERE repo=?", (repo.id,)),
                     ("DELETE FROM repo_files WHERE repo=?", (repo.id,)),
                     ("DELETE FROM repo_uploads WHERE repo=?", (repo.id,)),
                     ("DELETE FROM repos WHERE id=?", (repo.id,))])

    def repo(self, repo_type: str, repo_id: str) -> Repo | None:
        row = self._one("SELECT id, type, repo_id, private, created FROM repos WHERE type=? AND repo_id=?",
                        (repo_type, repo_id))
        return Repo(row[0], row[1], row[2], bool(row[3]), row[4]) if row else None

    def repo_by_key(self, key: str) -> Repo | None:
        """The repo a CAS token names (``"{type}:{ns}/{name}"``, hub_routes.RepoRequest.repo_key)."""
        repo_type, sep, repo_id = key.partition(":")
        return self.repo(repo_type, repo_id) if sep else None

    def refs(self, repo: Repo) -> dict[str, str]:
        return dict(self._all("SELECT name, commit_oid FROM refs WHERE repo=? ORDER BY name", (repo.id,)))

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
        tree = json.loads(zlib.decompress(row[0]))
        with self._lock:
            self._tree_cache.put(oid, tree)
        return tree  # type: ignore[no-any-return]

    def _insert_commit(self, c: Commit, repo_id: int, tree: dict[str, Any]) -> None:
        data = zlib.compress(json.dumps(tree, sort_keys=True, separators=(",", ":")).encode(), 6)
        self._db.execute("INSERT OR IGNORE INTO trees VALUES (?,?)", (c.tree, data))
        self._db.execute("INSERT INTO commits VALUES (?,?,?,?,?,?,?,?)",
                         (c.oid, repo_id, c.parent, c.tree, c.title, c.message, c.date, c.author))
        self._index_tree(repo_id, tree)

    def _index_tree(self, repo_id: int, tree: dict[str, Any]) -> None:
        """``repo_files`` += the Xet files of ``tree`` (inside the caller's transaction)."""
        self._db.executemany("INSERT OR IGNORE INTO repo_files VALUES (?,?)",
                             [(repo_id, e["xet"]) for e in tree.values() if "xet" in e])

    def add_commit(self, repo: Repo, branch: str, c: Commit, tree: dict[str, Any]) -> bool:
        """Store ``c`` and move ``branch`` to it iff the branch still points at ``c.parent`` (one transaction)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT commit_oid FROM refs WHERE repo=? AND name=?",
                                       (repo.id, branch)).fetchone()
                if row is None or row[0] != c.parent:
                    self._db.execute("ROLLBACK")
                    return False
                self._insert_commit(c, repo.id, tree)
                self._db.execute("UPDATE refs SET commit_oid=? WHERE repo=? AND name=?", (c.oid, repo.id, branch))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return True

    def set_ref(self, repo: Repo, name: str, oid: str | None) -> None:
        if oid is None:
            self._write([("DELETE FROM refs WHERE repo=? AND name=?", (repo.id, name))])
        else:
            self._write([("INSERT OR REPLACE INTO refs VALUES (?,?,?)", (repo.id, name, oid))])

    def counts(self) -> dict[str, int]:
        return {t: self._one(f"SELECT count(*) FROM {t}")[0]
                for t in ("xorbs", "files", "shards", "repos", "commits", "dedup_chunks")}
