"""Open the metadata database named by ``--db`` (or the default SQLite file): docs/architecture.md."""
from __future__ import annotations

from pathlib import Path

from xetfs.errors import ValidationError
from xetfs.server.metadata.database import Database
from xetfs.server.metadata.postgres import PostgresDatabase
from xetfs.server.metadata.sqlite import SqliteDatabase


def is_database_url(value: str) -> bool:
    return value.startswith(("postgresql://", "postgres://", "sqlite:"))


def open_database(target: str | Path) -> Database:
    """``postgresql://USER@HOST:PORT/DBNAME?…`` (libpq URL) -> PostgreSQL; ``sqlite:///PATH`` or a plain
    path -> SQLite."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(text)
    if text.startswith("sqlite:"):
        path = text.removeprefix("sqlite:").removeprefix("//")
        if not path:
            raise ValidationError("sqlite: URL needs a path, e.g. sqlite:///var/lib/xetfs/metadata.sqlite3")
        return SqliteDatabase(path)
    if "://" in text:
        raise ValidationError(f"unsupported --db {text!r} (want postgresql://… or sqlite:///PATH)")
    return SqliteDatabase(text)
