"""The shared metadata database: PostgreSQL through a ``psycopg_pool`` connection pool (docs/architecture.md).

``shared``: every node of a cluster writes it, so cluster-wide state (the server secret) lives in it.
Waits are bounded: ``connect_timeout``, the pool's checkout timeout and a per-session
``statement_timeout`` (and ``idle_in_transaction_session_timeout``). A deadlock or serialization failure
re-runs the transaction (``Database.write``); a lost connection, a pool or statement timeout becomes
``TransientError`` (HTTP 503). Migrations are serialized by a transaction-scoped advisory lock.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from xetfs.errors import TransientError, ValidationError
from xetfs.server.metadata.database import POSTGRES, Database, Tx

CONNECT_TIMEOUT_S = 10
STATEMENT_TIMEOUT_S = 30
POOL_TIMEOUT_S = 30
POOL_MAX_SIZE = 10
_SCHEMA_LOCK_KEY = 0x7865746673          # "xetfs": the advisory lock serializing migrations


class PostgresDatabase(Database):
    dialect = POSTGRES
    shared = True

    def __init__(self, url: str, max_size: int = POOL_MAX_SIZE, pool_timeout_s: float = POOL_TIMEOUT_S,
                 statement_timeout_s: float = STATEMENT_TIMEOUT_S) -> None:
        try:
            import psycopg
            from psycopg import conninfo, errors
            from psycopg_pool import ConnectionPool, PoolTimeout
        except ImportError:
            raise ValidationError("--db postgresql://… needs psycopg and psycopg-pool: "
                                  "pip install 'xetfs[postgres]'") from None
        self._psycopg, self._errors, self._pool_timeout = psycopg, errors, PoolTimeout
        self.integrity_errors = (psycopg.IntegrityError,)
        try:
            params = conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise ValidationError(f"bad --db URL: {exc}") from None
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        ms = int(statement_timeout_s * 1000)
        params["options"] = (f"{params.get('options', '')} -c statement_timeout={ms} "
                             f"-c idle_in_transaction_session_timeout={2 * ms}").strip()
        self._where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"
        dsn = conninfo.make_conninfo("", **params)
        try:                                      # one direct connection first: libpq's own one-line reason
            psycopg.connect(dsn, autocommit=True).close()
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TransientError(f"PostgreSQL at {self._where} is unreachable: {reason}") from None
        self._pool = ConnectionPool(dsn, min_size=1, max_size=max_size, kwargs={"autocommit": True},
                                    timeout=pool_timeout_s, open=False, check=ConnectionPool.check_connection,
                                    name="xetfs-metadata")
        try:
            self._pool.open(wait=True, timeout=float(str(params["connect_timeout"])) + 5)
        except PoolTimeout:
            self._pool.close()
            raise TransientError(f"PostgreSQL at {self._where} is unreachable") from None

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except (self._pool_timeout, self._psycopg.OperationalError) as exc:
            if isinstance(exc, self._errors.LockNotAvailable | self._errors.QueryCanceled):
                raise TransientError(f"metadata database busy: {exc}") from exc
            raise TransientError(f"metadata database unavailable: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Tx]:
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield Tx(cur, POSTGRES)

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Tx]:
        with self._connection() as conn, conn.cursor() as cur:
            yield Tx(cur, POSTGRES)

    def _retry_write(self, exc: BaseException) -> bool:
        cause = exc.__cause__ if isinstance(exc, TransientError) else exc
        return isinstance(cause, self._errors.DeadlockDetected | self._errors.SerializationFailure)

    def schema_version(self, tx: Tx) -> int:
        tx.execute("CREATE TABLE IF NOT EXISTS xetfs_schema(version BIGINT NOT NULL)")
        row = tx.one("SELECT version FROM xetfs_schema")
        return int(row[0]) if row else 0

    def set_schema_version(self, tx: Tx, version: int) -> None:
        if tx.execute("UPDATE xetfs_schema SET version=?", (version,)) == 0:
            tx.execute("INSERT INTO xetfs_schema(version) VALUES (?)", (version,))

    def lock_schema(self, tx: Tx) -> None:
        tx.one("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK_KEY,))

    def close(self) -> None:
        self._pool.close()

    def __repr__(self) -> str:
        return f"PostgreSQL {self._where}"
