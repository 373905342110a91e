"""Opening a server's stores from the command line, for the offline maintenance commands (``fsck``, ``gc``).

A helper shared by commands, not a command itself (commands never import each other).
"""
from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xetfs.server.metadata.store import Metadata
    from xetfs.server.stores.base import Storage


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="the server's data directory")
    parser.add_argument("--storage", metavar="URL", help="s3://BUCKET/PREFIX (default: DIR/objects)")
    parser.add_argument("--s3-endpoint", metavar="URL", help="S3-compatible endpoint")
    parser.add_argument("--db", metavar="URL", help="metadata database (default: SQLite under DIR)")


@contextmanager
def opened_stores(args: argparse.Namespace) -> Iterator[tuple[Storage, Metadata]]:
    """The object store and the metadata named by ``add_store_arguments``, closed on exit."""
    from xetfs.errors import NotFound
    from xetfs.server.metadata.store import Metadata
    from xetfs.server.stores.base import Closable
    from xetfs.server.stores.config import local_store, open_store

    data: Path = args.data
    if not args.db and not (data / "metadata.sqlite3").is_file():
        raise NotFound(f"no xetfs serve data directory at {data}")
    storage = open_store(args.storage, args.s3_endpoint) or local_store(data)
    meta = Metadata(args.db or data / "metadata.sqlite3")
    try:
        yield storage, meta
    finally:
        meta.close()
        if isinstance(storage, Closable):
            storage.close()
