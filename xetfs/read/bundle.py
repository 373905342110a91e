"""Cache bundles: one revision's snapshot, layouts and chunk entries in a tar file, to move a warm cache to a
machine with no network (docs/architecture.md, "Cache management"; ``xetfs cache export|import``).

A bundle is an uncompressed tar (chunk entries hold chunk bytes that rarely compress) of, in this order::

    xetfs-bundle.json                                  {"format": 1, repo_type, repo_id, revision, commit,
                                                        files, bytes, entries}
    chunks/<2 hex>/<xorb hex>.<start>-<end>            chunk entries, byte for byte as in the disk tier
    layouts/<2 hex>/<file hash hex>.layout             the layouts of the revision's Xet files
    regular/<2 hex>/<git blob id>                      its regular files (up to ``regular_store.MAX_BYTES``)
    snapshot                                           the revision snapshot (``xetfs.read.snapshot``)

Export takes every Xet file of the revision's snapshot, which must be complete in the cache (``xetfs prefetch``
first); each entry and layout is checked (every chunk re-hashed) from the very bytes it writes. Import reads the
tar as a stream and trusts nothing: a member must be a regular file of a known name and a bounded size, and is
checked like a cache entry before it is installed (atomic renames, layouts merged under the tier's lock); the
snapshot comes last and is installed only when every member before it was sound, so a truncated or damaged
bundle never leaves a snapshot naming data that is not there. Blocking file I/O.
"""
from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from xetfs.client.config import RepoRef
from xetfs.errors import FormatError, IntegrityError, NotFound
from xetfs.osutil.atomic import publish, temp_path_for
from xetfs.read.cache_admin import CHUNKS, LAYOUTS, CacheIndex, layout_path, load_layout
from xetfs.read.disk_files import dir_lock, entry_ok, parse_layout_name, parse_name, write_file
from xetfs.read.layout import decode_layout, merge_into, peek_layout
from xetfs.read.pins import PinNote, add_pins
from xetfs.read.regular_store import MAX_BYTES, REGULAR, get_regular, has_regular, put_regular
from xetfs.read.snapshot import Snapshot, decode_snapshot, encode_snapshot, load_snapshot, save_snapshot

FORMAT = 1
MANIFEST = "xetfs-bundle.json"
SNAPSHOT = "snapshot"
MAX_MEMBER_BYTES = 256 * 1024 * 1024   # an entry is at most one xorb (64 MiB); a snapshot of a huge repo, tens of MB
_CHUNK_NAME = re.compile(r"^chunks/([0-9a-f]{2})/([0-9a-f]{64}\.[0-9]+-[0-9]+)$")
_LAYOUT_NAME = re.compile(r"^layouts/([0-9a-f]{2})/([0-9a-f]{64}\.layout)$")
_REGULAR_NAME = re.compile(r"^regular/([0-9a-f]{2})/([0-9a-f]{40}|[0-9a-f]{64})$")

Progress = Callable[[int], object]


@dataclass(frozen=True, slots=True)
class BundleInfo:
    repo: str
    revision: str
    commit: str
    files: int
    bytes: int
    entries: int


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def export_bundle(cache_dir: Path, repo: RepoRef, out: Path, progress: Progress = lambda n: None) -> BundleInfo:
    """Write the bundle of ``repo`` at ``repo.revision`` (its snapshot must be in ``cache_dir``) to ``out``."""
    snap = load_snapshot(cache_dir, repo)
    if snap is None:
        raise NotFound(f"no snapshot of {repo.repo_id}@{repo.revision} in {cache_dir}: mount it or run "
                       "xetfs prefetch first")
    index = CacheIndex(cache_dir)
    entries: set[Path] = set()
    short: list[str] = []
    files = snap.xet_files()
    for e in files:
        assert e.xet_hash is not None
        cached, held = index.file_coverage(load_layout(cache_dir, e.xet_hash, e.size) or [])
        if cached < e.size:
            short.append(e.path)
        entries |= held
    regular = [e for e in snap.files if e.xet_hash is None and e.size <= MAX_BYTES]
    short += [e.path for e in regular if not has_regular(cache_dir, e.oid)]
    if short:
        raise NotFound(f"{len(short)} files of {repo.repo_id}@{repo.revision} are not wholly cached (first: "
                       f"{short[0]}): run xetfs prefetch first")
    info = BundleInfo(f"{snap.repo.repo_type}s/{snap.repo.repo_id}", snap.repo.revision, snap.commit, len(files),
                      sum(e.size for e in files), len(entries))
    tmp = temp_path_for(Path(out))
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, MANIFEST, json.dumps({"format": FORMAT, "repo_type": snap.repo.repo_type,
                                            "repo_id": snap.repo.repo_id, **_public(info)}).encode())
            for path in sorted(entries):
                data = path.read_bytes()
                parsed = parse_name(path.name)
                if parsed is None or not entry_ok(data, parsed[2] - parsed[1]):
                    raise IntegrityError(f"cache entry {path} is damaged: run xetfs cache verify, then "
                                         "xetfs prefetch")
                _add(tar, f"{CHUNKS}/{path.parent.name}/{path.name}", data)
                progress(len(data))
            for e in {bytes(e.xet_hash): e for e in files if e.xet_hash is not None and e.size}.values():
                assert e.xet_hash is not None   # (an empty file needs no layout; a file held twice, one)
                layout = layout_path(cache_dir, e.xet_hash)
                data = layout.read_bytes()
                decode_layout(data, e.xet_hash, e.size)   # FormatError: damaged
                _add(tar, f"{LAYOUTS}/{layout.parent.name}/{layout.name}", data)
            for e in {e.oid: e for e in regular}.values():
                data = get_regular(cache_dir, e.oid, e.size) or b""
                if len(data) != e.size:
                    raise IntegrityError(f"cached regular file {e.path} is damaged: run xetfs prefetch")
                _add(tar, f"{REGULAR}/{e.oid[:2]}/{e.oid}", data)
            _add(tar, SNAPSHOT, encode_snapshot(snap))
        publish(tmp, Path(out))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return info


def _public(info: BundleInfo) -> dict[str, object]:
    return {"revision": info.revision, "commit": info.commit, "files": info.files, "bytes": info.bytes,
            "entries": info.entries}


def import_bundle(bundle: Path, cache_dir: Path, *, pin: bool = False,
                  progress: Progress = lambda n: None) -> BundleInfo:
    """Check and install a bundle into ``cache_dir``; ``IntegrityError`` when any member is damaged (the sound
    ones stay installed, the snapshot is not)."""
    bad: list[str] = []
    manifest: dict[str, object] | None = None
    snap: Snapshot | None = None
    entries = 0
    with open(bundle, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for member in tar:
            name = member.name
            if not member.isfile() or member.size > MAX_MEMBER_BYTES:
                bad.append(name)
                continue
            data = _read(tar.extractfile(member), member.size)
            progress(len(data))
            if manifest is None:
                manifest = _manifest(name, data)
            elif snap is not None:
                bad.append(name)   # nothing may follow the snapshot
            elif (m := _CHUNK_NAME.match(name)) is not None:
                if not _install_entry(cache_dir, m.group(1), m.group(2), data):
                    bad.append(name)
                entries += 1
            elif (m := _LAYOUT_NAME.match(name)) is not None:
                if not _install_layout(cache_dir, m.group(1), m.group(2), data):
                    bad.append(name)
            elif (m := _REGULAR_NAME.match(name)) is not None:
                if m.group(1) != m.group(2)[:2] or not put_regular(cache_dir, m.group(2), data):
                    bad.append(name)
            elif name == SNAPSHOT:
                try:
                    snap = decode_snapshot(data)
                except FormatError:
                    bad.append(name)
            else:
                bad.append(name)
    if manifest is None:
        raise FormatError(f"{bundle} is not a xetfs cache bundle")
    if snap is None and not bad:
        raise IntegrityError(f"{bundle} is truncated: it has no snapshot")
    if bad:
        raise IntegrityError(f"{len(bad)} damaged or unexpected members in {bundle} (first: {bad[0]}); the "
                             "revision was not installed")
    assert snap is not None
    if (snap.repo.repo_type, snap.repo.repo_id, snap.commit) != (manifest["repo_type"], manifest["repo_id"],
                                                                 manifest["commit"]):
        raise IntegrityError(f"{bundle}: its snapshot is not the revision its manifest names")
    files = snap.xet_files()
    if pin:
        add_pins(cache_dir, [(bytes(e.xet_hash), PinNote(snap.repo.repo_id, snap.repo.revision, e.path))
                             for e in files if e.xet_hash is not None])
    save_snapshot(cache_dir, snap)
    return BundleInfo(f"{snap.repo.repo_type}s/{snap.repo.repo_id}", snap.repo.revision, snap.commit, len(files),
                      sum(e.size for e in files), entries)


def _read(f: IO[bytes] | None, size: int) -> bytes:
    data = f.read() if f is not None else b""
    if len(data) != size:
        raise IntegrityError("the bundle is truncated")
    return data


def _manifest(name: str, data: bytes) -> dict[str, object]:
    try:
        obj = json.loads(data) if name == MANIFEST else None
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise FormatError(f"not a xetfs cache bundle of format {FORMAT} (first member {name!r})")
    return obj


def _install_entry(cache_dir: Path, sub: str, name: str, data: bytes) -> bool:
    parsed = parse_name(name)
    if parsed is None or sub != name[:2] or not entry_ok(data, parsed[2] - parsed[1]):
        return False
    return write_file(str(Path(cache_dir) / CHUNKS / sub / name), [data], len(data))


def _install_layout(cache_dir: Path, sub: str, name: str, data: bytes) -> bool:
    raw = parse_layout_name(name)
    head = peek_layout(data)
    if raw is None or head is None or head[0] != raw or sub != name[:2]:
        return False
    try:
        terms = decode_layout(data, raw, head[1])
    except FormatError:
        return False
    path = layout_path(cache_dir, raw)
    with dir_lock(str(path.parent)):
        try:
            stored: bytes | None = path.read_bytes()
        except FileNotFoundError:
            stored = None
        merged = merge_into(stored, raw, head[1], terms)
        return merged == stored or write_file(str(path), [merged], len(merged))
