"""What a cache dir holds, and the maintenance of it: ``xetfs cache ls|du|prune|verify|clear`` and the checks of
``xetfs prefetch`` (docs/architecture.md, "Cache management").

A cache dir (``--cache-dir``) holds the disk tier (``chunks/``, ``layouts/``: ``xetfs.read.disk_tier``), the
revision snapshots (``snapshots/``: ``xetfs.read.snapshot``), small regular files (``regular/``:
``xetfs.read.regular_store``) and the pins (``pins/``: ``xetfs.read.pins``); it
also holds what this module never touches: a writable mount's ``staging/`` (changes not uploaded yet), the
shard cache and the daemon ``logs/``.

``CacheIndex`` is one scan of the chunk entries; with it, the cached bytes of a file are the bytes of the
chunks its stored layout places in the file and an entry holds (a file is *complete* when they cover it).
Every function does blocking file I/O: run them in a worker thread on the trio side.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from xetfs.errors import FormatError
from xetfs.osutil.atomic import TMP_SUFFIX
from xetfs.protocol.hub import TreeEntry
from xetfs.read.disk_files import LAYOUT_SUFFIX, entry_ok, parse_layout_name, parse_name, scan
from xetfs.read.disk_tier import DiskTier
from xetfs.read.layout import LayoutTerm, decode_layout, peek_layout
from xetfs.read.pins import PINS_DIR, pinned, protection
from xetfs.read.regular_store import REGULAR, has_regular, regular_sound
from xetfs.read.snapshot import Snapshot, decode_snapshot, list_snapshots

CHUNKS, LAYOUTS, SNAPSHOTS = "chunks", "layouts", "snapshots"
STALE_TEMP_S = 3600.0     # a writer's temp file older than this was left by a crash


def layout_path(cache_dir: Path, file_hash: bytes) -> Path:
    hexed = bytes(file_hash).hex()
    return Path(cache_dir) / LAYOUTS / hexed[:2] / (hexed + LAYOUT_SUFFIX)


def load_layout(cache_dir: Path, file_hash: bytes, size: int) -> list[LayoutTerm] | None:
    """The stored layout of a file, None when absent or damaged."""
    try:
        return decode_layout(layout_path(cache_dir, file_hash).read_bytes(), file_hash, size)
    except (FileNotFoundError, FormatError):
        return None


class CacheIndex:
    """The chunk entries of a cache dir, by xorb (one directory scan)."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self.entries: dict[bytes, list[tuple[int, int, Path, int]]] = {}   # xorb -> (start, end, path, size)
        for _, path, size in scan([self.cache_dir / CHUNKS]):
            parsed = parse_name(path.name)
            if parsed is not None:
                self.entries.setdefault(parsed[0], []).append((parsed[1], parsed[2], path, size))

    def holding(self, xorb: bytes, index: int) -> Path | None:
        for start, end, path, _ in self.entries.get(bytes(xorb), ()):
            if start <= index < end:
                return path
        return None

    def file_coverage(self, terms: Iterable[LayoutTerm]) -> tuple[int, set[Path]]:
        """(bytes of the file held by an entry, the entries holding them) for a file's layout terms."""
        held: dict[int, int] = {}           # file offset -> size of a chunk an entry holds
        paths: set[Path] = set()
        for t in terms:
            at = t.file_offset
            for i, n in enumerate(t.chunk_sizes):
                path = self.holding(t.xorb_hash, t.chunk_start + i)
                if path is not None and at not in held:
                    held[at] = n
                    paths.add(path)
                at += n
        return sum(held.values()), paths


@dataclass(frozen=True, slots=True)
class FileState:
    path: str
    size: int
    cached_bytes: int
    pinned: bool
    xet: bool


def file_states(cache_dir: Path, index: CacheIndex, entries: Iterable[TreeEntry],
                pins: set[bytes] | None = None) -> list[FileState]:
    """Cached bytes and pin of each file (a regular file is cached whole in the regular-file store, or not)."""
    pins = pinned(cache_dir) if pins is None else pins
    out = []
    for e in entries:
        if not e.is_file:
            continue
        cached = e.size if e.xet_hash is None and has_regular(cache_dir, e.oid) else 0
        if e.xet_hash is not None:
            terms = load_layout(cache_dir, e.xet_hash, e.size)
            cached = e.size if e.size == 0 else min(e.size, index.file_coverage(terms or [])[0])
        out.append(FileState(e.path, e.size, cached, e.xet_hash is not None and bytes(e.xet_hash) in pins,
                             e.xet_hash is not None))
    return out


def listing(cache_dir: Path) -> list[tuple[Snapshot, list[FileState]]]:
    """``xetfs cache ls``: every revision with a snapshot, and the state of each of its files."""
    index, pins = CacheIndex(cache_dir), pinned(cache_dir)
    return [(s, file_states(cache_dir, index, s.entries, pins)) for s in list_snapshots(cache_dir)]


@dataclass(slots=True)
class Usage:
    """``xetfs cache du``: bytes and counts per part of the cache dir."""

    chunk_entries: int = 0
    chunk_bytes: int = 0
    layouts: int = 0
    layout_bytes: int = 0
    pinned_bytes: int = 0          # chunk entries and layouts the pins protect (part of the two above)
    pinned_files: int = 0
    snapshots: int = 0
    snapshot_bytes: int = 0
    regular_files: int = 0
    regular_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.chunk_bytes + self.layout_bytes + self.snapshot_bytes + self.regular_bytes


def usage(cache_dir: Path) -> Usage:
    u = Usage()
    keep = protection(cache_dir)
    u.pinned_files = len(keep.layouts)
    for _, path, size in scan([Path(cache_dir) / CHUNKS, Path(cache_dir) / LAYOUTS]):
        if path.name.endswith(LAYOUT_SUFFIX):
            u.layouts += 1
            u.layout_bytes += size
        else:
            u.chunk_entries += 1
            u.chunk_bytes += size
        u.pinned_bytes += size if keep.covers(path) else 0
    for path in (Path(cache_dir) / SNAPSHOTS).rglob("*.snapshot"):
        u.snapshots += 1
        u.snapshot_bytes += path.stat().st_size
    for _, path, size in scan([Path(cache_dir) / REGULAR]):
        u.regular_files += 1
        u.regular_bytes += size
    return u


@dataclass(slots=True)
class Pruned:
    entries: int = 0
    bytes: int = 0
    temp_files: int = 0
    kept_bytes: int = 0            # what stays in the tier (pinned included)
    pinned_bytes: int = 0


def prune(cache_dir: Path, *, max_bytes: int | None = None, older_than_s: float | None = None,
          now: float | None = None) -> Pruned:
    """Free space: delete unpinned chunk entries and layouts last used more than ``older_than_s`` ago, then the
    least recently used ones until the unpinned bytes fit in ``max_bytes``; pinned files stay, and so do the
    small regular files and the snapshots (outside the LRU, like pins). Temp files a crashed writer left (older
    than an hour) go too."""
    now = time.time() if now is None else now
    out = Pruned()
    keep = protection(cache_dir)
    free: list[tuple[float, Path, int]] = []
    for mtime, path, size in scan([Path(cache_dir) / CHUNKS, Path(cache_dir) / LAYOUTS]):
        if keep.covers(path):
            out.pinned_bytes += size
        else:
            free.append((mtime, path, size))
    free.sort(key=lambda e: e[0])
    total = sum(size for _, _, size in free)
    for mtime, path, size in free:
        old = older_than_s is not None and now - mtime > older_than_s
        if not old and (max_bytes is None or total <= max_bytes):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            out.entries += 1
            out.bytes += size
        total -= size
    out.temp_files = _drop_stale_temps(Path(cache_dir), now)
    out.kept_bytes = total + out.pinned_bytes
    return out


def _drop_stale_temps(cache_dir: Path, now: float) -> int:
    n = 0
    for part in (CHUNKS, LAYOUTS, SNAPSHOTS, REGULAR, PINS_DIR):
        for path in (cache_dir / part).rglob(f".*{TMP_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > STALE_TEMP_S:
                    path.unlink()
                    n += 1
    return n


@dataclass(slots=True)
class Verified:
    checked: int = 0
    checked_bytes: int = 0
    bad: list[str] = field(default_factory=list)   # cache-dir relative paths of damaged files (removed unless dry)


def verify(cache_dir: Path, *, remove: bool = True, progress: Callable[[int], object] = lambda n: None) -> Verified:
    """Re-hash every chunk entry (each chunk against its stored hash) and regular file (against its git blob id),
    check every layout and snapshot. A damaged file is deleted (``remove``) or only reported."""
    cache_dir = Path(cache_dir)
    out = Verified()
    tier = DiskTier(cache_dir, max_bytes=1 << 62) if remove else None

    def chunk_sound(path: Path) -> bool:
        if tier is None:
            return _entry_sound(path)
        ok = tier.check_entry(path)   # deletes a damaged entry itself
        return ok is True or (ok is None and not path.exists())

    checks: list[tuple[str, Callable[[Path], bool]]] = [(CHUNKS, chunk_sound), (LAYOUTS, _layout_sound),
                                                         (REGULAR, regular_sound), (SNAPSHOTS, _snapshot_sound)]
    for part, sound in checks:
        for _, path, size in sorted(scan([cache_dir / part]) if part != SNAPSHOTS else _snapshot_files(cache_dir)):
            out.checked += 1
            out.checked_bytes += size
            if not sound(path):
                out.bad.append(str(path.relative_to(cache_dir)))
                if remove:
                    path.unlink(missing_ok=True)
            progress(size)
    return out


def _snapshot_files(cache_dir: Path) -> list[tuple[float, Path, int]]:
    return [(0.0, p, p.stat().st_size) for p in (cache_dir / SNAPSHOTS).rglob("*.snapshot")]


def _snapshot_sound(path: Path) -> bool:
    try:
        decode_snapshot(path.read_bytes())
    except FormatError:
        return False
    except FileNotFoundError:
        pass
    return True


def _entry_sound(path: Path) -> bool:
    parsed = parse_name(path.name)
    try:
        return parsed is not None and entry_ok(path.read_bytes(), parsed[2] - parsed[1])
    except FileNotFoundError:
        return True


def _layout_sound(path: Path) -> bool:
    raw = parse_layout_name(path.name)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return True
    head = peek_layout(data)
    if raw is None or head is None or head[0] != raw:
        return False
    try:
        decode_layout(data, raw, head[1])
    except FormatError:
        return False
    return True


def clear(cache_dir: Path, *, pins: bool = False) -> int:
    """Empty the read cache: chunk entries, layouts, regular files and snapshots (and the pins with ``pins``).
    Never touches a
    writable mount's staging area, the shard cache or the logs. Returns the bytes freed."""
    freed = 0
    parts = [CHUNKS, LAYOUTS, REGULAR, SNAPSHOTS] + ([PINS_DIR] if pins else [])
    for part in parts:
        root = Path(cache_dir) / part
        for dirpath, _, names in os.walk(root):
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    freed += os.stat(os.path.join(dirpath, name)).st_size
        shutil.rmtree(root, ignore_errors=True)
    return freed
