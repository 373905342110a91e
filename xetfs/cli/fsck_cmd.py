"""Verify every object a `xetfs serve` store holds, and quarantine the bad ones.

Each xorb the index lists is read back and decoded; every chunk must match its hash and its indexed
offset. Each shard must hash (sha256) to its name, each inline file (git blob) to its oid. A bad object is
moved under quarantine/ in the same store (never served again; kept for inspection); its index record
stays, so a client uploading the good xorb again heals the store. A missing object is reported.

  xetfs fsck --data DIR                                  # embedded store DIR/objects, SQLite index
  xetfs fsck --data DIR --storage s3://BUCKET/PREFIX --s3-endpoint URL [--db postgresql://…]

Progress goes to stderr; the summary is one line on stdout (``--json`` for a JSON object). Exit status 0
when every object is good, 1 when any is bad or missing. Safe while the server runs.
"""
from __future__ import annotations

import argparse
import json
import sys

from xetfs.cli.server_data import add_store_arguments, opened_stores

HELP = "verify stored objects of `xetfs serve` and quarantine bad ones"


def configure(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser)
    parser.add_argument("--no-quarantine", action="store_true", help="only report bad objects")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from xetfs.server.services.integrity import QUARANTINE, FsckReport, fsck


    def progress(r: FsckReport) -> None:
        done = ", ".join(f"{n} {kind}" for kind, n in r.checked.items())
        print(f"fsck: checked {done}; {len(r.bad)} bad", file=sys.stderr, flush=True)

    with opened_stores(args) as (storage, meta):
        report = fsck(storage, meta, move_bad=not args.no_quarantine, progress=progress)
    for key, why in report.bad:
        print(f"fsck: bad {key}: {why}", file=sys.stderr)
    if args.json:
        print(json.dumps({"checked": report.checked, "bad": [{"key": k, "why": w} for k, w in report.bad],
                          "quarantined": not args.no_quarantine}))
    else:
        where = f", moved under {QUARANTINE}" if report.bad and not args.no_quarantine else ""
        print(f"checked {report.checked['xorbs']} xorbs, {report.checked['shards']} shards, "
              f"{report.checked['blobs']} blobs: {len(report.bad)} bad{where}")
    return 1 if report.bad else 0
