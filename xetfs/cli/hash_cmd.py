"""Print the Xet file hash of each FILE, like sha256sum: ``<xet file hash>  <path>``.

The file hash is the one hf_xet and the Hub use as the file's Xet id (shared/xet-protocol.md §3.2): files are
read in blocks and streamed through the chunker (§2), so memory use does not grow with the file size.
With --json each line is one JSON object: {"path", "hash", "size", "sha256", "chunks"}.
A file that cannot be read prints a one-line error; the exit status is then 1.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xetfs.core.params import ChunkingParams

HELP = "print the Xet file hash of files"

READ_BLOCK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileDigest:
    path: str
    hash: str            # Xet hex
    size: int
    sha256: str | None   # normal hex; None unless asked for
    chunks: int


def stream_file_chunks(path: str, on_block: Callable[[memoryview], None] | None = None,
                       params: ChunkingParams | None = None) -> list[tuple[bytes, int]]:
    """Chunk a file block by block; returns ``(chunk hash, size)`` in order, calls ``on_block`` per block read."""
    from xetfs.core.chunking import Chunker
    from xetfs.core.params import DEFAULT_CHUNKING

    chunker = Chunker(params or DEFAULT_CHUNKING)
    out: list[tuple[bytes, int]] = []
    buf = bytearray(READ_BLOCK_BYTES)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            block = view[:n]
            if on_block is not None:
                on_block(block)
            out.extend((c.hash, c.size) for c in chunker.feed(block))
    out.extend((c.hash, c.size) for c in chunker.finish())
    return out


def digest_file(path: str, with_sha256: bool = False) -> FileDigest:
    """The Xet file hash (and optionally the sha256) of one file."""
    import hashlib

    from xetfs.core.hashing import file_hash

    sha = hashlib.sha256() if with_sha256 else None
    chunks = stream_file_chunks(path, sha.update if sha is not None else None)
    return FileDigest(path=path, hash=str(file_hash(chunks)), size=sum(n for _, n in chunks),
                      sha256=sha.hexdigest() if sha is not None else None, chunks=len(chunks))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="files to hash")
    parser.add_argument("--json", action="store_true", help="one JSON object per file (adds size, sha256, chunks)")


def run(args: argparse.Namespace) -> int:
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
