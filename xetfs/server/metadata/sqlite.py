"""The embedded metadata database: SQLite in WAL mode, one connection behind one lock (docs/architecture.md).

Not ``shared``: one node writes it. Writes run under ``BEGIN IMMEDIATE`` (the file's write lock), so there
are no deadlocks and no write retries; the schema version is ``PRAGMA user_version``.
"""
from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from xetfs.errors import NoSpace
from xetfs.server.metadata.database import SQLITE, Database, Tx


class SqliteDatabase(Database):
    dialect = SQLITE
    shared = False
    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, path: Path | str, busy_timeout_s: float = 30.0) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=busy_timeout_s)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Tx]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._db.cursor(), SQLITE)
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                    raise NoSpace("the server is out of disk space (metadata database); "
                                  "ask its operator to free space") from exc
                raise

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Tx]:
        with self._lock:
            yield Tx(self._db.cursor(), SQLITE)

    def _retry_write(self, exc: BaseException) -> bool:
        return False                              # one writer at a time: no deadlocks

    def schema_version(self, tx: Tx) -> int:
        return int(tx.one("PRAGMA user_version")[0])

    def set_schema_version(self, tx: Tx, version: int) -> None:
        tx.execute(f"PRAGMA user_version={int(version)}")

    def lock_schema(self, tx: Tx) -> None:
        pass                                      # BEGIN IMMEDIATE already holds the write lock

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"SQLite {self.path}"
