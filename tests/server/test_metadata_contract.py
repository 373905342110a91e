"""The metadata conformance suite (``xetfs.testing.metadata_suite.check_metadata_contract``) on both backends:
SQLite (a file, two connections standing for two processes) and a real PostgreSQL (one fresh database per
test, several pools standing for several nodes); plus what only PostgreSQL has: migrating an existing
database, refusing a newer schema, and clean errors for an unreachable server or a bad URL."""
from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from xetfs.errors import TransientError, ValidationError
from xetfs.server.metadata.connect import open_database
from xetfs.server.metadata.postgres import PostgresDatabase
from xetfs.server.metadata.store import SCHEMA_VERSION, Metadata
from xetfs.testing.metadata_suite import check_metadata_contract
from xetfs.testing.deps import required
from xetfs.testing.services import PostgresHandle, free_port


def pg_url(pg: PostgresHandle, dbname: str = "postgres") -> str:
    return f"postgresql://postgres@127.0.0.1:{pg.port}/{dbname}"


@pytest.fixture
def pg_db(pg: PostgresHandle) -> str:
    """A fresh, empty database on the shared server -> its URL."""
    psycopg = required("psycopg")
    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg_url(pg, name)


def test_sqlite_metadata_contract(tmp_path: Path) -> None:
    check_metadata_contract(lambda: Metadata(tmp_path / "m.sqlite3"))


def test_postgres_metadata_contract(pg_db: str) -> None:
    check_metadata_contract(lambda: Metadata(pg_db))


def test_sqlite_url_and_plain_path_are_one_database(tmp_path: Path) -> None:
    Metadata(tmp_path / "m.sqlite3").close()
    meta = Metadata(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    assert meta.migrated_from == SCHEMA_VERSION and not meta.shared
    meta.close()


def test_postgres_schema_is_migrated_from_an_older_version(pg_db: str) -> None:
    psycopg = required("psycopg")
    meta = Metadata(pg_db)
    assert meta.shared
    meta.close()
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("DROP TABLE settings")
        conn.execute("UPDATE xetfs_schema SET version = 1")
    meta = Metadata(pg_db)
    assert meta.migrated_from == 1 and meta.setting("k", "v") == "v"
    meta.close()
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("UPDATE xetfs_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(ValidationError, match="newer than this xetfs"):
        Metadata(pg_db)


def test_postgres_pool_enforces_the_statement_timeout(pg_db: str) -> None:
    db = PostgresDatabase(pg_db, statement_timeout_s=0.2)
    try:
        with pytest.raises(TransientError):
            db.one("SELECT pg_sleep(5)")
        assert db.one("SELECT 1")[0] == 1, "the pool recovers after a cancelled statement"
    finally:
        db.close()


def test_unreachable_or_bad_database_is_one_clean_error(tmp_path: Path) -> None:
    required("psycopg")
    with pytest.raises(TransientError, match="unreachable"):
        PostgresDatabase(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?connect_timeout=1")
    with pytest.raises(ValidationError, match="unsupported --db"):
        open_database("mysql://x/y")
    with pytest.raises(ValidationError, match="bad --db URL"):
        open_database("postgresql://127.0.0.1/x?nosuchparam=1")
