"""Revision snapshots: what a mount needs to start without the server (docs/architecture.md, "Offline mode").

A ``Snapshot`` records, for one repo at one revision (as the user named it: a branch, a tag, a commit sha),
the commit that revision resolved to and that commit's whole tree listing: per entry its path, type, size,
git blob id, Xet file hash and sha256 (``xetfs.protocol.hub.TreeEntry``), plus the commit's date (the files'
mtime) and whether the revision is a branch (a writable mount stays writable offline).

Who writes one: every mount that starts online (after listing the tree), a mount that follows its branch at
each new head (``xetfs.fs.follow``), and ``xetfs prefetch``. Who reads one: a mount whose server cannot be
reached at start (it comes up offline from it), ``xetfs cache export`` (the bundle carries it) and the
``xetfs cache`` listing commands.

What is NOT in it: the bytes. A snapshot names the Xet files by hash; their *layouts* (which chunks make up
each file, ``xetfs.read.layout``) stay in the disk tier under ``<cache_dir>/layouts/`` and their chunks under
``<cache_dir>/chunks/`` (``xetfs.read.disk_tier``), shared by every revision holding the same file. So a
cached byte of a file offline is: the snapshot's entry -> the file hash -> the stored layout -> the chunk
entry, each checked (layout and entry checksums, chunk hashes), exactly like an online remount with a warm
cache. A file whose layout or chunks are missing reads as EIO offline.

Location: ``<cache_dir>/snapshots/<repo type>/<namespace>/<name>/<revision, percent-quoted>.snapshot``
(outside the disk tier's directories, so the chunk LRU never evicts it; one small file per revision).

Encoding (UTF-8)::

    line 1: one JSON object, keys sorted: {"format": 1, "repo_type", "repo_id", "revision", "commit",
            "last_modified": str | null, "is_branch": bool,
            "entries": [[path, type, size, oid, xet hash hex | null, sha256 hex | null], ...] (sorted by path)}
    line 2: hex of the keyed BLAKE3 chunk hash (docs/protocol.md, "Hashes") of line 1, first 16 bytes

``encode_snapshot`` / ``decode_snapshot`` are pure; ``save_snapshot`` (atomic replace, ``xetfs.osutil.atomic``)
and ``load_snapshot`` do blocking file I/O: call them from a worker thread on the trio side.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from xetfs.client.config import REPO_TYPES, RepoRef
from xetfs.core.hashing import MerkleHash, chunk_hash
from xetfs.errors import FormatError
from xetfs.osutil.atomic import write_atomic
from xetfs.protocol.hub import TreeEntry

log = logging.getLogger(__name__)

FORMAT = 1
SUFFIX = ".snapshot"
CHECKSUM_BYTES = 16


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One repo revision as a mount sees it: ``repo.revision`` is the name asked for, ``commit`` what it
    resolved to, ``entries`` the tree of that commit (files and directories)."""

    repo: RepoRef
    commit: str
    entries: tuple[TreeEntry, ...]
    last_modified: str | None = None      # ISO 8601 date of the commit (``RepoInfo.last_modified``)
    is_branch: bool = False

    @property
    def files(self) -> list[TreeEntry]:
        return [e for e in self.entries if e.is_file]

    def xet_files(self) -> list[TreeEntry]:
        """The files stored in Xet (``xet_hash`` set): those whose layouts and chunks the disk tier holds."""
        return [e for e in self.entries if e.is_file and e.xet_hash is not None]


def _checksum(data: bytes) -> str:
    return bytes(chunk_hash(data)[:CHECKSUM_BYTES]).hex()


def encode_snapshot(s: Snapshot) -> bytes:
    entries = [[e.path, e.type, e.size, e.oid, None if e.xet_hash is None else e.xet_hash.xet_hex(), e.sha256]
               for e in sorted(s.entries, key=lambda e: e.path)]
    body = json.dumps({"format": FORMAT, "repo_type": s.repo.repo_type, "repo_id": s.repo.repo_id,
                       "revision": s.repo.revision, "commit": s.commit, "last_modified": s.last_modified,
                       "is_branch": s.is_branch, "entries": entries},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return body + b"\n" + _checksum(body).encode() + b"\n"


def decode_snapshot(data: bytes) -> Snapshot:
    """The snapshot ``encode_snapshot`` wrote; ``FormatError`` when it is damaged or of another format."""
    body, sep, tail = data.rstrip(b"\n").rpartition(b"\n")
    if not sep or tail.decode("ascii", "replace") != _checksum(body):
        raise FormatError("revision snapshot fails its checksum")
    try:
        obj = json.loads(body)
        if obj["format"] != FORMAT:
            raise FormatError(f"revision snapshot format {obj['format']!r} is not {FORMAT}")
        repo = RepoRef(str(obj["repo_id"]), str(obj["repo_type"]), str(obj["revision"]))
        entries = tuple(TreeEntry(path=str(p), type=str(t), size=int(n), oid=str(oid),
                                  xet_hash=None if x is None else MerkleHash.from_hex(x),
                                  sha256=None if sha is None else str(sha))
                        for p, t, n, oid, x, sha in obj["entries"])
        modified = obj["last_modified"]
        return Snapshot(repo, str(obj["commit"]), entries, None if modified is None else str(modified),
                        bool(obj["is_branch"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"revision snapshot is malformed: {exc}") from None


def snapshot_path(cache_dir: Path, repo: RepoRef) -> Path:
    """Where the snapshot of ``repo`` (at ``repo.revision``) lives in ``cache_dir``."""
    if repo.repo_type not in REPO_TYPES or any(p in ("", ".", "..") for p in repo.repo_id.split("/")):
        raise FormatError(f"not a repo: {repo}")
    return (Path(cache_dir) / "snapshots" / repo.repo_type / repo.repo_id /
            (quote(repo.revision, safe="") + SUFFIX))


def save_snapshot(cache_dir: Path, snapshot: Snapshot) -> Path:
    """Write (atomically replace) the snapshot of ``snapshot.repo``; returns its path. Blocking."""
    path = snapshot_path(cache_dir, snapshot.repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, encode_snapshot(snapshot))
    return path


def load_snapshot(cache_dir: Path, repo: RepoRef) -> Snapshot | None:
    """The snapshot of ``repo`` at ``repo.revision``, or None when there is none or it is damaged (logged:
    a damaged snapshot is as good as none). Blocking."""
    path = snapshot_path(cache_dir, repo)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        snap = decode_snapshot(data)
    except FormatError as exc:
        log.warning("revision snapshot %s is damaged (%s); ignoring it", path, exc)
        return None
    if (snap.repo.repo_type, snap.repo.repo_id, snap.repo.revision) != (repo.repo_type, repo.repo_id, repo.revision):
        log.warning("revision snapshot %s is of %s, not %s; ignoring it", path, snap.repo, repo)
        return None
    return snap


def list_snapshots(cache_dir: Path) -> list[Snapshot]:
    """Every readable snapshot in ``cache_dir``, sorted by repo and revision (damaged ones are skipped). Blocking."""
    found: list[Snapshot] = []
    for path in sorted((Path(cache_dir) / "snapshots").glob(f"*/*/*/*{SUFFIX}")):
        repo_type, namespace, name = path.parts[-4:-1]
        repo = RepoRef(f"{namespace}/{name}", repo_type, unquote(path.name[:-len(SUFFIX)]))
        try:
            snap = load_snapshot(cache_dir, repo)
        except FormatError:
            continue
        if snap is not None:
            found.append(snap)
    return found


def snapshot_of(repo: RepoRef, commit: str, entries: Iterable[TreeEntry], *, last_modified: str | None = None,
                is_branch: bool = False) -> Snapshot:
    """A ``Snapshot`` from a tree listing (``HubClient.list_tree``) of ``commit``."""
    return Snapshot(repo, commit, tuple(entries), last_modified, is_branch)
