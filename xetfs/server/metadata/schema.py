"""The metadata schema and its versioned migrations, one logical schema for SQLite and PostgreSQL.

Every migration is DDL text in the common dialect (``db.Dialect.ddl`` fills the ``{int}``, ``{float}``,
``{blob}``, ``{serial}``, ``{without_rowid}`` types) plus an optional data step. ``migrate(db)`` runs, in ONE
transaction holding the schema lock (``Database.lock_schema``), every migration newer than the stored
version and then stores the new version: an interrupted migration is redone on the next start, two nodes
starting together migrate once, and a second run is a no-op. A database newer than this code is refused.

Versions (the SQLite numbers are those of the first release, where ``PRAGMA user_version`` 1 meant
"``repo_files`` backfilled"):

1. CAS index (xorbs, files, sha256_index, dedup_chunks, shards), tokens, repos/refs/commits/trees, the
   repo binding tables ``repo_files`` / ``repo_uploads``; ``repo_files`` backfilled from every stored
   commit's tree (a no-op on a fresh database; on a database from before repo binding, the data step).
2. ``settings`` (key -> value): cluster-wide values every node must agree on, e.g. the server secret that
   signs CAS tokens and data URLs when the database is shared (auth.py).
3. ``file_xorbs`` (xorb hash, file hash): which files reference a xorb, so a dedup answer can name the
   neighbours of a hit (backfilled from ``files``).
4. ``discussions`` (repo, num -> kind, title, status, author, target branch, merge commit) and
   ``discussion_events`` (repo, num, seq -> type, author, date, JSON data): discussions and pull requests
   (``metadata.discussions``); a pull request's head is the ref ``refs/pr/{num}`` in ``refs``.
5. ``repo_settings`` (repo, key -> value: ``gated``) and ``repo_redirects`` (type, old repo id -> repo): what
   ``update_repo_settings`` sets besides ``private``, and the names a moved repo answers to
   (``metadata.repoadmin``).
6. ``gc_doomed`` (xorb hash, since): xorbs the garbage collector is deleting; no shard may reference one and
   no upload may register one until the collector is done (``metadata.gcstore``).
7. indexes by file hash (``file_xorbs``, ``sha256_index``, ``repo_uploads``, ``dedup_chunks``) and by xorb hash
   (``dedup_chunks``), so the collector deletes a file's or a xorb's rows without scanning whole tables.
8. ``gc_doomed_blobs`` (blob oid, since): regular (non-Xet) file contents the collector is deleting; no commit
   may add one until the collector is done (``metadata.gcstore``).
9. an index of ``files`` by sha256: a commit's ``lfsFile`` resolves among the files with that (verified) sha256
   the repo can read, as several files may share one sha256 (``Metadata.file_by_sha256``).

Trees are stored as zlib-compressed canonical JSON (``encode_tree`` / ``decode_tree``); ``index_tree``
adds a tree's Xet files to ``repo_files`` (used by commits and by the version-1 backfill).
"""
from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xetfs.core.hashing import MerkleHash
from xetfs.errors import ValidationError
from xetfs.server.metadata.database import Database, Tx

log = logging.getLogger(__name__)

_V1 = """
CREATE TABLE IF NOT EXISTS xorbs(hash TEXT PRIMARY KEY, stored_bytes {int} NOT NULL,
    chunk_hashes {blob} NOT NULL, chunk_sizes {blob} NOT NULL, chunk_offsets {blob} NOT NULL,
    created {float} NOT NULL);
CREATE TABLE IF NOT EXISTS files(hash TEXT PRIMARY KEY, size {int} NOT NULL, terms {blob} NOT NULL,
    sha256 TEXT, created {float} NOT NULL);
CREATE TABLE IF NOT EXISTS sha256_index(sha256 TEXT PRIMARY KEY, file_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dedup_chunks(chunk_hash TEXT PRIMARY KEY, xorb_hash TEXT NOT NULL, file_hash TEXT);
CREATE TABLE IF NOT EXISTS shards(hash TEXT PRIMARY KEY, size {int} NOT NULL, created {float} NOT NULL);
CREATE TABLE IF NOT EXISTS tokens(id TEXT PRIMARY KEY, secret_hash TEXT UNIQUE NOT NULL, scope TEXT NOT NULL,
    repo TEXT, created {float} NOT NULL);
CREATE TABLE IF NOT EXISTS repos(id {serial}, type TEXT NOT NULL, repo_id TEXT NOT NULL,
    private {int} NOT NULL DEFAULT 0, created {float} NOT NULL, UNIQUE(type, repo_id));
CREATE TABLE IF NOT EXISTS refs(repo {int} NOT NULL, name TEXT NOT NULL, commit_oid TEXT NOT NULL,
    PRIMARY KEY(repo, name));
CREATE TABLE IF NOT EXISTS commits(oid TEXT PRIMARY KEY, repo {int} NOT NULL, parent TEXT, tree TEXT NOT NULL,
    title TEXT NOT NULL, message TEXT NOT NULL, date {float} NOT NULL, author TEXT);
CREATE TABLE IF NOT EXISTS trees(oid TEXT PRIMARY KEY, data {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS repo_files(repo {int} NOT NULL, file_hash TEXT NOT NULL,
    PRIMARY KEY(repo, file_hash)){without_rowid};
CREATE INDEX IF NOT EXISTS repo_files_by_file ON repo_files(file_hash);
CREATE TABLE IF NOT EXISTS repo_uploads(repo {int} NOT NULL, file_hash TEXT NOT NULL,
    PRIMARY KEY(repo, file_hash)){without_rowid};
"""

_V2 = """
CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


_V3 = """
CREATE TABLE IF NOT EXISTS file_xorbs(xorb_hash TEXT NOT NULL, file_hash TEXT NOT NULL,
    PRIMARY KEY(xorb_hash, file_hash)){without_rowid};
"""

_V4 = """
CREATE TABLE IF NOT EXISTS discussions(repo {int} NOT NULL, num {int} NOT NULL, is_pr {int} NOT NULL,
    title TEXT NOT NULL, status TEXT NOT NULL, author TEXT, created {float} NOT NULL, target TEXT,
    merge_commit TEXT, PRIMARY KEY(repo, num));
CREATE TABLE IF NOT EXISTS discussion_events(repo {int} NOT NULL, num {int} NOT NULL, seq {int} NOT NULL,
    type TEXT NOT NULL, author TEXT, created {float} NOT NULL, data TEXT NOT NULL, PRIMARY KEY(repo, num, seq));
"""

_V5 = """
CREATE TABLE IF NOT EXISTS repo_settings(repo {int} NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY(repo, key));
CREATE TABLE IF NOT EXISTS repo_redirects(type TEXT NOT NULL, old_id TEXT NOT NULL, repo {int} NOT NULL,
    PRIMARY KEY(type, old_id));
"""

_V6 = """
CREATE TABLE IF NOT EXISTS gc_doomed(xorb_hash TEXT PRIMARY KEY, since {float} NOT NULL);
"""

_V7 = """
CREATE INDEX IF NOT EXISTS file_xorbs_by_file ON file_xorbs(file_hash);
CREATE INDEX IF NOT EXISTS sha256_index_by_file ON sha256_index(file_hash);
CREATE INDEX IF NOT EXISTS repo_uploads_by_file ON repo_uploads(file_hash);
CREATE INDEX IF NOT EXISTS dedup_chunks_by_file ON dedup_chunks(file_hash);
CREATE INDEX IF NOT EXISTS dedup_chunks_by_xorb ON dedup_chunks(xorb_hash);
"""

_V8 = """
CREATE TABLE IF NOT EXISTS gc_doomed_blobs(oid TEXT PRIMARY KEY, since {float} NOT NULL);
"""

_V9 = """
CREATE INDEX IF NOT EXISTS files_by_sha256 ON files(sha256);
"""

_TERM_BYTES = 44                    # packed term: raw xorb hash (32), chunk start, chunk end, bytes (u32 each)


def _backfill_file_xorbs(tx: Tx) -> None:
    for file_hash, terms in tx.all("SELECT hash, terms FROM files"):
        raw = bytes(terms)
        xorbs = sorted({raw[i:i + 32] for i in range(0, len(raw), _TERM_BYTES)})
        tx.executemany("INSERT INTO file_xorbs VALUES (?,?) ON CONFLICT DO NOTHING",
                       [(str(MerkleHash(x)), file_hash) for x in xorbs])


def encode_tree(tree: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(tree, sort_keys=True, separators=(",", ":")).encode(), 6)


def decode_tree(data: bytes) -> dict[str, Any]:
    return json.loads(zlib.decompress(data))  # type: ignore[no-any-return]


def index_tree(tx: Tx, repo_id: int, tree: dict[str, Any]) -> None:
    """``repo_files`` += the Xet files of ``tree`` (inside the caller's transaction). Sorted, so concurrent
    transactions take the row locks in one order (no deadlock between two commits in PostgreSQL)."""
    rows = sorted({(repo_id, e["xet"]) for e in tree.values() if "xet" in e})
    tx.executemany("INSERT INTO repo_files VALUES (?,?) ON CONFLICT DO NOTHING", rows)


def _backfill_repo_files(tx: Tx) -> None:
    rows = tx.all("SELECT DISTINCT c.repo, t.data FROM commits c "
                  "JOIN trees t ON t.oid = c.tree JOIN repos r ON r.id = c.repo")
    for repo, data in rows:
        index_tree(tx, repo, decode_tree(bytes(data)))


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    summary: str
    ddl: str
    data: Callable[[Tx], None] | None = None


MIGRATIONS = (
    Migration(1, "CAS index, repos, tokens, repo binding (repo_files backfilled)", _V1, _backfill_repo_files),
    Migration(2, "settings: cluster-wide values (server secret)", _V2),
    Migration(3, "file_xorbs: files referencing each xorb (backfilled)", _V3, _backfill_file_xorbs),
    Migration(4, "discussions and pull requests, with their events", _V4),
    Migration(5, "repo settings (gated) and redirects of moved repos", _V5),
    Migration(6, "gc_doomed: xorbs being garbage-collected", _V6),
    Migration(7, "indexes by file and xorb hash for the garbage collector", _V7),
    Migration(8, "gc_doomed_blobs: regular-file blobs being garbage-collected", _V8),
    Migration(9, "files indexed by sha256 (commits resolve lfsFile among the files a repo can read)", _V9),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def migrate(db: Database) -> tuple[int, int]:
    """Bring ``db`` to ``SCHEMA_VERSION`` -> (version before, version after)."""
    def run(tx: Tx) -> tuple[int, int]:
        db.lock_schema(tx)
        before = db.schema_version(tx)
        if before > SCHEMA_VERSION:
            raise ValidationError(f"the metadata database has schema version {before}, newer than this xetfs "
                                  f"({SCHEMA_VERSION}): upgrade xetfs")
        for m in MIGRATIONS:
            if m.version > before:
                log.info("metadata %r: migration %d (%s)", db, m.version, m.summary)
                for statement in db.dialect.ddl(m.ddl):
                    tx.execute(statement)
                if m.data is not None:
                    m.data(tx)
        if before < SCHEMA_VERSION:
            db.set_schema_version(tx, SCHEMA_VERSION)
        return before, SCHEMA_VERSION

    return db.write(run)
