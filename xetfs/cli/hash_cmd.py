"""Print the Xet file hash of each FILE, like sha256sum: ``<xet file hash>  <path>``.

The file hash is the one hf_xet and the Hub use as the file's Xet id (docs/protocol.md, "Hashes"): files are
read in blocks and streamed through the chunker, so memory use does not grow with the file size.
With --json each line is one JSON object: {"path", "hash", "size", "sha256", "chunks"}.
A file that cannot be read prints a one-line error; the exit status is then 1.
"""
from __future__ import annotations

import argparse
import json
import sys

HELP = "print the Xet file hash of files"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="files to hash")
    parser.add_argument("--json", action="store_true", help="one JSON object per file (adds size, sha256, chunks)")


def run(args: argparse.Namespace) -> int:
    from xetfs.write.digest import digest_file

    status = 0
    for path in args.files:
        try:
            d = digest_file(path, with_sha256=args.json)
        except OSError as exc:
            print(f"xetfs: error: {path}: {exc.strerror or exc}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps({"path": d.path, "hash": d.hash, "size": d.size, "sha256": d.sha256,
                              "chunks": d.chunks}))
        else:
            print(f"{d.hash}  {d.path}")
    return status
