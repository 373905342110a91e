"""Print the structure of a xorb or a shard file.

A shard is recognised by its 32-byte header tag (docs/protocol.md, "Shards"); anything else is read as a
xorb: its chunk records (offset, scheme, compressed -> uncompressed size, chunk hash) and, if present, the
XETBLOB footer (docs/protocol.md, "Xorbs"). A xorb is fully decoded, so its xorb hash is recomputed and
checked against a footer or against a file name that carries a hash (``default.<hash>``, ``<hash>``). A shard
shows its files with their terms and its xorbs with their chunks, and the footer of a full shard.

``--json`` prints one JSON object instead. Bad input: a one-line error and exit status 1.
"""
from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

HELP = "show the structure of a xorb or shard file"
_HASH_IN_NAME = re.compile(r"([0-9a-fA-F]{64})(?:\.mdb)?$")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="a xorb or shard (.mdb) file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--limit", type=int, default=50, metavar="N",
                        help="list at most N chunks/files/xorbs in human output (default 50; 0 = all)")


def run(args: argparse.Namespace) -> int:
    from xetfs.core.shard import SHARD_TAG
    from xetfs.errors import FormatError, IntegrityError, XetError

    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise XetError(f"cannot read {args.file}: {exc.strerror}") from None
    is_shard = data[:len(SHARD_TAG)] == SHARD_TAG
    try:
        info = _shard_info(data) if is_shard else _xorb_info(data, args.file.name)
    except (FormatError, IntegrityError) as exc:
        what = "shard" if is_shard else "xorb (no shard header tag either)"
        raise type(exc)(f"{args.file}: not a valid {what}: {exc}") from None
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_human(info, args.limit or None)
    return 0


def _xorb_info(data: bytes, name: str) -> dict[str, Any]:
    from xetfs.core.hashing import MerkleHash
    from xetfs.core.xorb import parse_chunk_records, validate_xorb
    from xetfs.core.xorb_footer import XorbFooter, parse_xorb_footer

    m = _HASH_IN_NAME.search(name)
    expected = MerkleHash.from_hex(m.group(1)) if m else None
    built = validate_xorb(data, expected)  # FormatError / IntegrityError -> one-line error
    records = parse_chunk_records(data)
    footer: XorbFooter | None = parse_xorb_footer(data[records[-1].end:]) if records[-1].end < len(data) else None
    chunks = [{"index": i, "offset": r.offset, "scheme": r.scheme.name, "compressed_size": r.compressed_size,
               "uncompressed_size": r.uncompressed_size, "hash": str(h)}
              for i, (r, h) in enumerate(zip(records, built.chunk_hashes))]
    return {
        "kind": "xorb", "hash": str(built.hash), "hash_checked_against_name": expected is not None,
        "size_bytes": len(data), "body_bytes": len(built.data), "num_chunks": len(records),
        "uncompressed_bytes": sum(built.chunk_sizes),
        "schemes": dict(Counter(r.scheme.name for r in records)),
        "footer": None if footer is None else {"version": footer.version, "size_bytes": len(data) - len(built.data),
                                               "buffer": footer.buffer.hex()},
        "chunks": chunks,
    }


def _shard_info(data: bytes) -> dict[str, Any]:
    from dataclasses import asdict

    from xetfs.core.shard import parse_shard

    shard = parse_shard(data)
    footer = None
    if shard.footer is not None:
        footer = {k: (str(v) if isinstance(v, bytes) else v) for k, v in asdict(shard.footer).items()}
    return {
        "kind": "shard", "size_bytes": len(data), "footer": footer,
        "files": [{"file_hash": str(f.file_hash), "size_bytes": f.size,
                   "sha256": None if f.sha256 is None else str(f.sha256),
                   "terms": [{"xorb_hash": str(t.xorb_hash), "chunk_start": t.chunk_start, "chunk_end": t.chunk_end,
                              "unpacked_bytes": t.unpacked_bytes,
                              "verification_hash": None if f.verification is None else str(f.verification[i])}
                             for i, t in enumerate(f.terms)]} for f in shard.files],
        "xorbs": [{"xorb_hash": str(x.xorb_hash), "num_chunks": len(x.chunks),
                   "num_bytes_in_xorb": x.num_bytes_in_xorb, "num_bytes_on_disk": x.num_bytes_on_disk,
                   "flags": x.flags,
                   "chunks": [{"hash": str(c.chunk_hash), "byte_range_start": c.byte_range_start,
                               "unpacked_bytes": c.unpacked_bytes, "flags": c.flags} for c in x.chunks]}
                  for x in shard.xorbs],
    }


def _print_human(info: dict[str, Any], limit: int | None) -> None:
    if info["kind"] == "xorb":
        _print_xorb(info, limit)
    else:
        _print_shard(info, limit)


def _more(items: list[Any], limit: int | None) -> None:
    if limit is not None and len(items) > limit:
        print(f"    ... {len(items) - limit} more (--limit 0 shows all)")


def _print_xorb(info: dict[str, Any], limit: int | None) -> None:
    checked = " (matches file name)" if info["hash_checked_against_name"] else ""
    print(f"xorb {info['hash']}{checked}")
    print(f"  {info['size_bytes']} bytes: {info['num_chunks']} chunk records ({info['body_bytes']} bytes), "
          f"{info['uncompressed_bytes']} bytes uncompressed")
    print("  schemes: " + ", ".join(f"{k} x{v}" for k, v in sorted(info["schemes"].items())))
    footer = info["footer"]
    print("  footer: none" if footer is None else f"  footer: XETBLOB v{footer['version']}, {footer['size_bytes']} bytes")
    print("  chunks:  index    offset  scheme    compressed  uncompressed  hash")
    for c in info["chunks"][:limit]:
        print(f"    {c['index']:>9} {c['offset']:>9}  {c['scheme']:<8} {c['compressed_size']:>11} "
              f"{c['uncompressed_size']:>13}  {c['hash']}")
    _more(info["chunks"], limit)


def _print_shard(info: dict[str, Any], limit: int | None) -> None:
    form = "full shard (with footer)" if info["footer"] else "upload-form shard (no footer)"
    print(f"{form}, {info['size_bytes']} bytes, {len(info['files'])} files, {len(info['xorbs'])} xorbs")
    for f in info["files"][:limit]:
        print(f"  file {f['file_hash']}  {f['size_bytes']} bytes, {len(f['terms'])} terms"
              + (f", sha256 {f['sha256']}" if f["sha256"] else ""))
        for t in f["terms"][:limit]:
            print(f"    xorb {t['xorb_hash']} chunks [{t['chunk_start']}, {t['chunk_end']}) {t['unpacked_bytes']} bytes")
        _more(f["terms"], limit)
    _more(info["files"], limit)
    for x in info["xorbs"][:limit]:
        print(f"  xorb {x['xorb_hash']}  {x['num_chunks']} chunks, {x['num_bytes_in_xorb']} bytes uncompressed, "
              f"{x['num_bytes_on_disk']} on disk")
    _more(info["xorbs"], limit)
    footer = info["footer"]
    if footer:
        keyed = "zero (unkeyed)" if set(footer["hmac_key"]) == {"0"} else "set (chunk hashes keyed)"
        print(f"  footer: lookup entries files={footer['file_lookup_num_entry']} xorbs={footer['xorb_lookup_num_entry']} "
              f"chunks={footer['chunk_lookup_num_entry']}; hmac key {keyed}; created {footer['creation_timestamp']}, "
              f"expires {footer['key_expiry']}")
