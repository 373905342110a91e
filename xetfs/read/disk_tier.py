"""The persistent tier of the chunk cache: chunk entries and file layouts on disk (docs/architecture.md,
"The read path"; docs/protocol.md, "Hashes").

One entry per run of consecutive chunks (normally one fetched range), under
``<cache_dir>/chunks/<2 hex>/<xorb hex>.<first chunk>-<end chunk>``:
- an entry is ``MAGIC | n | n x (size, chunk hash[:16]) | keyed blake3(header)[:16] | chunk bytes...``; a lookup
  of chunk i finds any entry whose range holds i (an in-memory index of entry names, refreshed from the
  directory on a miss, so another mount's entries are found), reads the header, checks it, then reads only the
  needed chunks (``osutil.directio.read_spans``: runs of them as whole blocks around the page cache, small reads
  through it), and checks each one's checksum. A damaged entry (bad magic, bad checksum, wrong length) is
  deleted and reported as a miss, so the caller refetches it;
- a run of chunks already held by one entry is not stored again; writes are atomic (unique temp file in the
  same directory, then ``rename``), so two mounts sharing the directory never see a partial entry and may race
  to write the same key harmlessly (same content); they skip the page cache (``osutil.directio``);
- "last access" is the file mtime, bumped on a hit (at most once per ``touch_interval_s``);
- the size bound is kept by a running byte count (seeded by one scan at start-up); when it passes the bound,
  a rescan of the directory (the truth, including the other mount's writes) deletes the oldest entries until
  the tier is at ``low_water`` of its bound. Deleting an entry another process just read is harmless.
- pinned files (``xetfs.read.pins``, read afresh at each eviction) are never evicted: neither their layouts nor
  the entries overlapping the chunk ranges those layouts name; their bytes are not counted against the bound.

File layouts (``xetfs.read.layout``, which chunks make up a file) live beside the entries under
``<cache_dir>/layouts/<2 hex>/<file hash hex>.layout``: written atomically the same way, checked by the reader,
counted in the same byte bound and evicted by the same LRU scan; ``update_layout`` merges with the stored one
under a directory ``flock`` shared by every process (docs/architecture.md, "Cache management").

Every method does blocking file I/O and is thread-safe: the read path calls them from worker threads.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from xetfs.read.disk_files import (CHECKSUM_BYTES, HEADER_BYTES, checksum, dir_lock, encode_header, header_bytes,
                                   parse_header, parse_name, scan, write_file)
from xetfs.osutil.directio import read_spans
from xetfs.read.pins import protection

__all__ = ["CHECKSUM_BYTES", "HEADER_BYTES", "ChunkKey", "DamagedEntry", "DiskTier"]

log = logging.getLogger(__name__)

ChunkKey = tuple[bytes, int]          # (raw 32-byte xorb hash, chunk index)


class DiskTier:
    """The persistent tier. Thread-safe: every method may run in a worker thread."""

    def __init__(self, root: Path, max_bytes: int, *, low_water: float = 0.9,
                 touch_interval_s: float = 60.0) -> None:
        self.cache_dir = Path(root)
        self.root = Path(root) / "chunks"
        self.root.mkdir(parents=True, exist_ok=True)
        self.layout_root = Path(root) / "layouts"
        self.layout_root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.low_water = low_water
        self.touch_interval_s = touch_interval_s
        self._lock = threading.Lock()
        self._root = str(self.root)
        self._index: dict[bytes, set[tuple[int, int]]] = {}   # xorb -> chunk ranges of its entries (a hint)
        self._touched: dict[str, float] = {}
        self._used: dict[str, int] = {}   # path -> order of its last use by this process (breaks mtime ties)
        self._uses = 0
        self._bytes = 0
        keep = protection(self.cache_dir)
        for _, path, size in self._scan():
            self._bytes += 0 if keep.covers(path) else size   # the bound counts unpinned bytes only
            self._note(path.name)
        self.evictions = 0

    # -- names and the in-memory index (a hint: the directory is the truth, shared with other mounts) --------

    def _entry_path(self, xorb: bytes, start: int, end: int) -> str:
        hexed = xorb.hex()
        return os.path.join(self._root, hexed[:2], f"{hexed}.{start}-{end}")

    def _note(self, name: str) -> None:
        parsed = parse_name(name)
        if parsed is not None:
            with self._lock:
                self._index.setdefault(parsed[0], set()).add(parsed[1:])

    def _forget(self, name: str) -> None:
        parsed = parse_name(name)
        if parsed is not None:
            with self._lock:
                ranges = self._index.get(parsed[0])
                if ranges is not None:
                    ranges.discard(parsed[1:])

    def _refresh(self, xorb: bytes) -> None:
        """Re-read the entries of ``xorb`` from the directory (another mount may have written some)."""
        hexed = xorb.hex()
        try:
            names = [n for n in os.listdir(os.path.join(self._root, hexed[:2])) if n.startswith(hexed + ".")]
        except FileNotFoundError:
            names = []
        found = {p[1:] for p in map(parse_name, names) if p is not None}
        with self._lock:
            self._index[xorb] = found

    def _ranges(self, xorb: bytes) -> list[tuple[int, int]]:
        with self._lock:
            return sorted(self._index.get(xorb, ()))

    def path_for(self, key: ChunkKey) -> Path:
        """The entry holding chunk ``key`` (a one-chunk name when none does)."""
        xorb, index = key
        for _ in range(2):
            for start, end in self._ranges(xorb):
                if start <= index < end:
                    return Path(self._entry_path(xorb, start, end))
            self._refresh(xorb)
        return Path(self._entry_path(xorb, index, index + 1))

    # -- reads ---------------------------------------------------------------------------------------------

    def get(self, key: ChunkKey) -> bytes | None:
        """The chunk, or None when absent. DamagedEntry when its entry was damaged (and is now deleted)."""
        found, corrupt = self.get_many([key])
        if corrupt:
            raise DamagedEntry(str(key[1]))
        return found.get(key)

    def get_many(self, keys: Sequence[ChunkKey]) -> tuple[dict[ChunkKey, bytes], int]:
        """The chunks found among ``keys`` and the number of damaged entries met (each deleted)."""
        found: dict[ChunkKey, bytes] = {}
        corrupt = 0
        by_xorb: dict[bytes, list[int]] = {}
        for xorb, index in keys:
            by_xorb.setdefault(xorb, []).append(index)
        for xorb, wanted in by_xorb.items():
            todo = set(wanted)
            for attempt in range(2):
                for start, end in self._ranges(xorb):
                    need = sorted(i for i in todo if start <= i < end)
                    if not need:
                        continue
                    got = self._read_entry(xorb, start, end, need)
                    if got is None:
                        corrupt += 1
                        continue
                    for i, data in got.items():
                        found[(xorb, i)] = data
                        todo.discard(i)
                    if not todo:
                        break
                if not todo or attempt:
                    break
                self._refresh(xorb)
        return found, corrupt

    def _read_entry(self, xorb: bytes, start: int, end: int, need: list[int]) -> dict[int, bytes] | None:
        """Chunks ``need`` of one entry ({} when the file is gone); None when damaged (it is deleted)."""
        path = self._entry_path(xorb, start, end)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            self._forget(os.path.basename(path))
            return {}
        try:
            st = os.fstat(fd)
            n = end - start
            index = parse_header(os.pread(fd, header_bytes(n), 0), n)
            out: dict[int, bytes] = {}
            ok = index is not None
            if index is not None:
                offsets = [header_bytes(n)]
                for size, _ in index:
                    offsets.append(offsets[-1] + size)
                ok = offsets[-1] == st.st_size
            if ok and index is not None:
                spans = [(offsets[i - start], index[i - start][0]) for i in need]
                for i, data in zip(need, read_spans(fd, spans)):   # around the page cache
                    j = i - start
                    if len(data) != index[j][0] or checksum(data) != index[j][1]:
                        ok = False
                        break
                    out[i] = data
        finally:
            os.close(fd)
        if not ok:
            log.warning("disk cache entry %s is damaged; dropping it", os.path.basename(path))
            self._remove(Path(path), st.st_size)
            return None
        now = time.time()
        self._use(path)
        if now - max(st.st_mtime, self._touched.get(path, 0.0)) > self.touch_interval_s:
            self._touched[path] = now
            with contextlib.suppress(FileNotFoundError):
                os.utime(path)
        return out

    # -- file layouts (``xetfs.read.layout``): one file per file hash, counted in the bound, evicted like entries --

    def _layout_path(self, file_hash: bytes) -> str:
        hexed = bytes(file_hash).hex()
        return os.path.join(str(self.layout_root), hexed[:2], hexed + ".layout")

    def get_layout(self, file_hash: bytes) -> bytes | None:
        """The stored layout bytes of a file (checked by the caller), or None."""
        path = self._layout_path(file_hash)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)
        self._use(path)
        return data

    def put_layout(self, file_hash: bytes, data: bytes) -> None:
        """Replace the layout of a file (atomic: another mount sees the old or the new one, whole)."""
        if self._store_layout(self._layout_path(file_hash), data):
            self.evict()

    def _store_layout(self, path: str, data: bytes) -> bool:
        """Write a layout; whether the tier is now over its bound."""
        try:
            old = os.stat(path).st_size
        except FileNotFoundError:
            old = 0
        if not write_file(path, [data], len(data)):
            return False
        self._use(path)
        with self._lock:
            self._bytes += len(data) - old
            return self._bytes > self.max_bytes

    def update_layout(self, file_hash: bytes, merge: Callable[[bytes | None], bytes | None]) -> None:
        """Replace the layout of a file by ``merge(stored layout or None)`` (None: keep it), under a lock shared
        with the other processes using the directory, so what another one stored meanwhile is not lost."""
        path = self._layout_path(file_hash)
        over = False
        with dir_lock(os.path.dirname(path)):
            try:
                with open(path, "rb") as f:
                    old: bytes | None = f.read()
            except FileNotFoundError:
                old = None
            data = merge(old)
            if data is not None and data != old:
                over = self._store_layout(path, data)
        if over:   # not under the lock: an eviction rescans the whole tier
            self.evict()

    def check_entry(self, path: Path) -> bool | None:
        """``xetfs cache verify``: re-hash every chunk of one entry. True when sound, False when damaged (it
        is deleted), None when it is gone or not an entry."""
        parsed = parse_name(path.name)
        if parsed is None:
            return None
        got = self._read_entry(parsed[0], parsed[1], parsed[2], list(range(parsed[1], parsed[2])))
        return None if got == {} else got is not None

    def drop_layout(self, file_hash: bytes) -> None:
        """Delete a damaged layout (the reader relearns it from reconstructions)."""
        path = Path(self._layout_path(file_hash))
        with contextlib.suppress(FileNotFoundError):
            self._remove(path, path.stat().st_size)

    # -- writes --------------------------------------------------------------------------------------------

    def put(self, key: ChunkKey, data: bytes) -> None:
        self.put_range(key[0], key[1], [data])

    def put_range(self, xorb: bytes, start: int, datas: Sequence[bytes],
                  hashes: Sequence[bytes] | None = None) -> None:
        """Store consecutive chunks ``start, start + 1, ...`` of ``xorb``: each run of them that no entry
        holds yet becomes one entry (atomic), so no chunk is stored twice. ``hashes``: their chunk hashes when
        the caller verified them (else computed here)."""
        held = self._ranges(xorb)
        begin = None
        for i in range(len(datas) + 1):
            free = i < len(datas) and not any(s <= start + i < e for s, e in held)
            if free and begin is None:
                begin = i
            elif not free and begin is not None:
                self._put_entry(xorb, start + begin, datas[begin:i], None if hashes is None else hashes[begin:i])
                begin = None

    def _put_entry(self, xorb: bytes, start: int, datas: Sequence[bytes], hashes: Sequence[bytes] | None) -> None:
        end = start + len(datas)
        name = f"{xorb.hex()}.{start}-{end}"
        head = encode_header(datas, hashes)
        total = len(head) + sum(map(len, datas))
        path = self._entry_path(xorb, start, end)
        if not write_file(path, [head, *datas], total):
            return
        self._use(path)
        self._note(name)
        with self._lock:
            self._bytes += total
            over = self._bytes > self.max_bytes
        if over:
            self.evict()

    def evict(self) -> None:
        """Delete least recently used entries until the tier is at its low-water mark. Pinned files' layouts
        and chunks (``xetfs.read.pins``, read afresh: another process may have pinned) are skipped and not
        counted."""
        with self._lock:   # least recently used first: by mtime, then (a coarse clock ties) by our own order
            used = dict(self._used)
        keep = protection(self.cache_dir)
        entries = sorted((e for e in self._scan() if not keep.covers(e[1])),
                         key=lambda e: (e[0], used.get(str(e[1]), -1)))
        total = sum(size for _, _, size in entries)
        target = int(self.max_bytes * self.low_water)
        for _, path, size in entries:
            if total <= target:
                break
            self._remove(path, 0)
            total -= size
            self.evictions += 1
        with self._lock:
            self._bytes = total

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def _use(self, path: str) -> None:
        with self._lock:
            self._uses += 1
            self._used[path] = self._uses

    def _remove(self, path: Path, size: int) -> None:
        self._forget(path.name)
        with self._lock:
            self._used.pop(str(path), None)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        with self._lock:
            self._bytes -= size

    def _scan(self) -> Iterable[tuple[float, Path, int]]:
        return scan([self.root, self.layout_root])


class DamagedEntry(Exception):
    """Internal: a disk entry failed its checksum (counted, then treated as a miss)."""
