"""Manage Hub tokens of a `xetfs serve` data directory.

`xetfs token create --data DIR --scope read|write [--repo NS/NAME]` prints a new token. Only its sha256 is
stored (SQLite under DIR), so print it once and keep it. A token with --repo is limited to that repo: NS/NAME
is a model, datasets/NS/NAME a dataset, spaces/NS/NAME a space (the type counts). Write implies read. Works
while the server runs (SQLite WAL). For servers sharing a PostgreSQL database, name it instead of the data
directory: `xetfs token create --db postgresql://… --scope …` (valid on every node).

`xetfs token revoke --data DIR TOKEN` (the token itself, or its 8-hex-digit id) deletes it: from the next
request on, the Hub routes refuse it (401) and it gets no new xet token. Xet tokens issued before stay
valid until they expire (at most 1 h): they can read and upload chunks but commit nothing.
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "create and revoke Hub tokens of `xetfs serve`"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="print a new token")
    revoke = sub.add_parser("revoke", help="delete a token: the Hub routes refuse it from now on")
    for p in (create, revoke):
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument("--data", type=Path, help="the server's data directory")
        where.add_argument("--db", metavar="URL", help="the servers' metadata database (postgresql://…)")
    create.add_argument("--scope", required=True, choices=("read", "write"))
    create.add_argument("--repo", help="limit the token to one repo: NS/NAME (a model), datasets/NS/NAME or "
                                       "spaces/NS/NAME")
    revoke.add_argument("token", metavar="TOKEN", help="the token, or its id")


def run(args: argparse.Namespace) -> int:
    from xetfs.errors import NotFound
    from xetfs.server.auth import create_hub_token, hash_token
    from xetfs.server.metadata.store import Metadata

    if args.db:
        meta = Metadata(args.db)
    else:
        data: Path = args.data
        if not data.is_dir():
            raise NotFound(f"no data directory {data}")
        meta = Metadata(data / "metadata.sqlite3")
    try:
        if args.action == "revoke":
            token_id = meta.delete_token(args.token, hash_token(args.token))
            if token_id is None:
                raise NotFound("no such token (give the token itself or its id)")
            print(f"revoked token {token_id}")
            return 0
        _, token = create_hub_token(meta, args.scope, args.repo)
    finally:
        meta.close()
    print(token)
    return 0
