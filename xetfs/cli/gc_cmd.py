"""Delete the xorbs, shards, file records and regular-file blobs of a `xetfs serve` store that no repo reaches
any more.

Live: every Xet file named by any commit of any repo (every branch, tag and pull request ref, and all their
history), and everything uploaded within the grace period (an upload in flight keeps its xorbs). The rest
is deleted; each deletion goes to DIR/audit.log (``gc_delete``).

  xetfs gc --data DIR --dry-run                      # what would go; changes nothing
  xetfs gc --data DIR --grace 24h                    # the default grace period
  xetfs gc --data DIR --keep-history 1               # only the newest commit of each ref keeps its data
  xetfs gc --data DIR --storage s3://BUCKET/PREFIX --s3-endpoint URL --db postgresql://…

Safe while the server runs, on one node or many (one collector at a time per database). A shard that names
a xorb being deleted is refused (the client uploads it again). Progress on stderr; the summary on stdout
(``--json`` for a JSON object; with ``--dry-run --json`` it lists the objects).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from xetfs.cli.durations import duration, history
from xetfs.cli.server_data import add_store_arguments, opened_stores

HELP = "delete stored objects of `xetfs serve` that no repo reaches (after a grace period)"


def configure(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser)
    parser.add_argument("--grace", type=duration, default=24 * 3600.0, metavar="DURATION",
                        help="keep anything uploaded more recently than this (default 24h; 0 = nothing)")
    parser.add_argument("--keep-history", type=history, default=None, metavar="N|all",
                        help="keep the data of the newest N commits of every branch, tag and pull request "
                             "(default all: every commit keeps its data, as in git)")
    parser.add_argument("--dry-run", action="store_true", help="only report what would be deleted")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from xetfs.server.context import AuditLog
    from xetfs.server.services.gc import collect

    with opened_stores(args) as (storage, meta):
        report = collect(meta, storage, AuditLog(args.data / "audit.log"), grace_s=args.grace,
                         dry_run=args.dry_run, now=time.time(), keep_history=args.keep_history,
                         progress=lambda line: print(f"gc: {line}", file=sys.stderr, flush=True))
    if args.json:
        out = report.summary()
        if args.dry_run:
            out.update(xorb_keys=[f"xorbs/{x}" for x in report.xorbs], shard_keys=[f"shards/{s}" for s in report.shards])
        print(json.dumps(out))
    else:
        if args.dry_run:
            for key in [f"xorbs/{x}" for x in report.xorbs] + [f"shards/{s}" for s in report.shards]:
                print(f"would delete {key}")
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{verb} {len(report.xorbs)} xorbs, {len(report.shards)} shards, {len(report.files)} file records "
              f"({report.bytes} bytes); kept {report.live_xorbs} xorbs of {report.live_files} files")
    return 0
