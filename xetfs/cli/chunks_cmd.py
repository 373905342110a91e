"""List the content-defined chunks of FILE (docs/protocol.md, "Chunks"): ``<offset> <size> <chunk hash>``.

Offsets and sizes are in bytes; the chunk hash is in Xet hex. With --json each line is
one JSON object: {"index", "offset", "size", "hash"}. The file is streamed, not read into memory.
"""
from __future__ import annotations

import argparse
import json
import sys

HELP = "list the content-defined chunks of a file"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="file to chunk")
    parser.add_argument("--json", action="store_true", help="one JSON object per chunk")


def run(args: argparse.Namespace) -> int:
    from xetfs.core.hashing import MerkleHash
    from xetfs.write.digest import stream_file_chunks

    try:
        chunks = stream_file_chunks(args.file)
    except OSError as exc:
        print(f"xetfs: error: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    offset = 0
    for index, (h, size) in enumerate(chunks):
        text = str(MerkleHash(h))
        if args.json:
            print(json.dumps({"index": index, "offset": offset, "size": size, "hash": text}))
        else:
            print(f"{offset} {size} {text}")
        offset += size
    return 0
