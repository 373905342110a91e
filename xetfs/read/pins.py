"""Pinned files: files the disk tier's LRU never evicts (docs/architecture.md, "Cache management").

``xetfs prefetch --pin`` pins the Xet files it warms; ``xetfs cache unpin`` releases them. A pin is one small
file per Xet file hash, ``<cache_dir>/pins/<2 hex>/<file hash hex>.pin`` (raw hash hex, as the layouts are
named), so two revisions holding the same file share one pin and a pin survives the revision that made it.
Its content (one JSON object: repo, revision, path, time) only says who pinned it (for a human reading the
file); a damaged one still pins.

What a pin protects, at every eviction of every process sharing the cache dir (``protection``): the file's
layout (``<cache_dir>/layouts/...``) and every chunk entry overlapping a chunk range that layout names. The
pins directory is outside the tier's directories, so the LRU never deletes a pin itself. Pinned bytes do not
count against the tier's size bound (``--cache-size`` bounds the unpinned bytes; ``xetfs cache du`` shows both).

Blocking file I/O: call from a worker thread on the trio side.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from xetfs.errors import FormatError
from xetfs.osutil.atomic import fsync_dir, write_atomic
from xetfs.read.disk_files import LAYOUT_SUFFIX, parse_layout_name, parse_name
from xetfs.read.layout import decode_layout, peek_layout

PINS_DIR = "pins"
SUFFIX = ".pin"


@dataclass(frozen=True, slots=True)
class PinNote:
    """Who pinned a file (informational)."""

    repo: str = ""
    revision: str = ""
    path: str = ""


def pin_path(cache_dir: Path, file_hash: bytes) -> Path:
    hexed = bytes(file_hash).hex()
    return Path(cache_dir) / PINS_DIR / hexed[:2] / (hexed + SUFFIX)


def add_pins(cache_dir: Path, pins: Iterable[tuple[bytes, PinNote]]) -> int:
    """Pin files (by raw file hash), durably (each pin fsynced, then each directory once); returns how many were
    not pinned before."""
    added = 0
    dirs: set[Path] = set()
    for file_hash, note in pins:
        path = pin_path(cache_dir, file_hash)
        added += not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"repo": note.repo, "revision": note.revision, "path": note.path, "pinned_at": int(time.time())}
        write_atomic(path, json.dumps(body, sort_keys=True).encode() + b"\n", sync_dir=False)
        dirs.add(path.parent)
    for d in dirs | {d.parent for d in dirs}:
        fsync_dir(d)
    return added


def remove_pins(cache_dir: Path, hashes: Iterable[bytes] | None = None) -> int:
    """Unpin these files (all when None); returns how many pins were removed."""
    removed = 0
    for file_hash in (pinned(cache_dir) if hashes is None else hashes):
        with contextlib.suppress(FileNotFoundError):
            pin_path(cache_dir, file_hash).unlink()
            removed += 1
    return removed


def pinned(cache_dir: Path) -> set[bytes]:
    """The raw hashes of the pinned files."""
    found: set[bytes] = set()
    root = Path(cache_dir) / PINS_DIR
    with contextlib.suppress(FileNotFoundError):
        for sub in os.scandir(root):
            if sub.is_dir():
                for entry in os.scandir(sub.path):
                    if entry.name.endswith(SUFFIX):
                        raw = parse_layout_name(entry.name[:-len(SUFFIX)] + LAYOUT_SUFFIX)
                        if raw is not None:
                            found.add(raw)
    return found


@dataclass(slots=True)
class Protection:
    """What the pins protect from eviction: the pinned layouts and the chunk ranges they name, per xorb."""

    layouts: set[bytes] = field(default_factory=set)
    ranges: dict[bytes, list[tuple[int, int]]] = field(default_factory=dict)

    def covers(self, path: Path) -> bool:
        name = path.name
        if name.endswith(LAYOUT_SUFFIX):
            return parse_layout_name(name) in self.layouts
        parsed = parse_name(name)
        if parsed is None:
            return False
        xorb, start, end = parsed
        return any(s < end and start < e for s, e in self.ranges.get(xorb, ()))

    def add_layout(self, file_hash: bytes, data: bytes) -> None:
        self.layouts.add(bytes(file_hash))
        for xorb, start, end in _layout_ranges(file_hash, data):
            self.ranges.setdefault(xorb, []).append((start, end))


def _layout_ranges(file_hash: bytes, data: bytes) -> list[tuple[bytes, int, int]]:
    head = peek_layout(data)
    if head is None or head[0] != bytes(file_hash):
        return []
    try:
        return [(t.xorb_hash, t.chunk_start, t.chunk_end) for t in decode_layout(data, file_hash, head[1])]
    except FormatError:
        return []


def protection(cache_dir: Path) -> Protection:
    """Read the pins and the pinned layouts of ``cache_dir`` (another process may have pinned since)."""
    keep = Protection()
    for file_hash in pinned(cache_dir):
        hexed = file_hash.hex()
        keep.layouts.add(file_hash)
        try:
            data = (Path(cache_dir) / "layouts" / hexed[:2] / (hexed + LAYOUT_SUFFIX)).read_bytes()
        except FileNotFoundError:
            continue
        keep.add_layout(file_hash, data)
    return keep
