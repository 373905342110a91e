"""Git-like commits of the Hub API (docs/protocol.md, Hub API): snapshots, paths, NDJSON commit ops.

A commit stores a FULL snapshot: a tree ``{path: entry}`` where an entry is
``{"size", "oid", "sha256"}`` for a regular file (``oid`` = git blob sha1 of the content, which is stored
in storage under ``blobs/<oid>``) or ``{"size", "oid", "sha256", "xet"}`` for a Xet file (``oid`` = git blob sha1 of
its git-LFS pointer, ``xet`` = Xet file hash). Tree oid = sha1 of the canonical JSON; commit oid = sha1 of
a git-like text naming the repo, tree, parent, author, date and message (40 hex).

An NDJSON commit is applied to the parent snapshot: ``file`` (base64 content), ``lfsFile`` (sha256
-> Xet file through the sha256 index the shard upload filled; unknown sha256 -> 404, size mismatch ->
400), ``deletedFile``, ``deletedFolder``. ``parentCommit`` in the header must be the branch head (else 412).
Paths are validated (``names.check_path``): no absolute paths, no ``.``/``..``/empty segments, no control
character or backslash, segments <= 255 bytes, paths <= 4096 bytes.

Pure functions over dicts, except that ``apply_commit_lines`` takes the two lookups it needs as callables.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from xetfs.errors import Conflict, NotFound, ValidationError
from xetfs.core.gitblob import git_blob_oid, lfs_pointer
from xetfs.protocol.hub import AddRegular, AddXet, CommitHeader, parse_commit_ndjson
from xetfs.server.metadata.store import Commit, FileRecord
from xetfs.server.names import check_path

Tree = dict[str, dict[str, Any]]

LFS_SIZE_THRESHOLD_BYTES = 1024 * 1024


def xet_entry(rec: FileRecord) -> dict[str, Any]:
    assert rec.sha256 is not None
    return {"size": rec.size, "oid": git_blob_oid(lfs_pointer(rec.sha256, rec.size)), "sha256": rec.sha256,
            "xet": str(rec.hash)}


def tree_oid(tree: Tree) -> str:
    return hashlib.sha1(json.dumps(tree, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def make_commit(repo_key: str, parent: str | None, tree: Tree, title: str, message: str,
                author: str | None) -> Commit:
    now = time.time()
    t = tree_oid(tree)
    text = f"repo {repo_key}\ntree {t}\nparent {parent or ''}\nauthor {author or ''} {now!r}\n\n{title}\n\n{message}"
    return Commit(hashlib.sha1(text.encode()).hexdigest(), 0, parent, t, title, message, now, author)


@dataclass
class AppliedCommit:
    header: CommitHeader
    tree: Tree
    changes: list[str] = field(default_factory=list)
    size_bytes: int = 0
    blobs: list[tuple[str, bytes]] = field(default_factory=list)      # regular-file contents: (git blob oid, data)


def apply_commit_lines(body: bytes, tree: Tree, head_oid: str,
                       resolve_sha256: Callable[[str], FileRecord | None],
                       put_blob: Callable[[str, bytes], object]) -> AppliedCommit:
    """Apply NDJSON commit operations (parsed by ``protocol.hub.parse_commit_ndjson``) to a copy of ``tree``;
    nothing is written unless all lines are valid (blobs are content-addressed, so writing them first
    leaves no visible trace on failure)."""
    header, ops = parse_commit_ndjson(body)
    if header.parent_commit is not None and header.parent_commit != head_oid:
        raise Conflict(f"parentCommit {header.parent_commit} is not the head of the branch ({head_oid})")
    out = AppliedCommit(header, dict(tree))
    blobs = out.blobs
    for op in ops:
        if isinstance(op, AddRegular):
            path, data = check_path(op.path), op.content
            oid = git_blob_oid(data)
            out.tree[path] = {"size": len(data), "oid": oid, "sha256": hashlib.sha256(data).hexdigest()}
            blobs.append((oid, data))
            out.size_bytes += len(data)
            key = "file"
        elif isinstance(op, AddXet):
            path = check_path(op.path)
            out.tree[path] = _xet_entry_for(op, resolve_sha256)
            out.size_bytes += out.tree[path]["size"]
            key = "lfsFile"
        elif not op.is_folder:
            path = check_path(op.path)
            if out.tree.pop(path, None) is None:
                raise NotFound(f"cannot delete {path}: no such file")
            key = "deletedFile"
        else:
            prefix = check_path(op.path.rstrip("/")) + "/"
            gone = [p for p in out.tree if p.startswith(prefix)]
            if not gone:
                raise NotFound(f"cannot delete folder {prefix}: no such folder")
            for p in gone:
                del out.tree[p]
            key = "deletedFolder"
        out.changes.append(f"{key}:{op.path}")
    _check_no_file_dir_clash(out.tree)
    for oid, data in blobs:
        put_blob(oid, data)
    return out


def _xet_entry_for(op: AddXet, resolve_sha256: Callable[[str], FileRecord | None]) -> dict[str, Any]:
    rec = resolve_sha256(op.sha256)
    if rec is None:
        raise NotFound(f"no uploaded Xet file has sha256 {op.sha256}: upload it through the CAS first")
    if op.size is not None and op.size != rec.size:
        raise ValidationError(f"lfsFile {op.path}: size {op.size} != uploaded size {rec.size}")
    return xet_entry(rec)


def _check_no_file_dir_clash(tree: Tree) -> None:
    dirs = {p[:i] for p in tree for i in range(len(p)) if p[i] == "/"}
    clash = dirs & tree.keys()
    if clash:
        raise ValidationError(f"{sorted(clash)[0]} would be both a file and a folder")


# ---------------------------------------------------------------------------------------- listings

def entry_json(path: str, e: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "file", "oid": e["oid"], "size": e["size"], "path": path}
    if "xet" in e:
        pointer = lfs_pointer(e["sha256"], e["size"])
        obj["lfs"] = {"oid": e["sha256"], "size": e["size"], "pointerSize": len(pointer)}
        obj["xetHash"] = e["xet"]
    return obj


def dir_json(tree_id: str, path: str) -> dict[str, Any]:
    return {"type": "directory", "oid": hashlib.sha1(f"{tree_id}:{path}".encode()).hexdigest(), "size": 0,
            "path": path}


def list_tree(tree: Tree, tree_id: str, base: str, recursive: bool) -> list[dict[str, Any]]:
    """Entries under ``base`` ('' = root): one level, or everything below with ``recursive``."""
    prefix = f"{base}/" if base else ""
    if base and base in tree:
        return [entry_json(base, tree[base])]
    files: list[dict[str, Any]] = []
    dirs: set[str] = set()
    for path in sorted(tree):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix):].split("/")
        for i in range(1, len(rest) if recursive else min(2, len(rest))):
            dirs.add(prefix + "/".join(rest[:i]))
        if recursive or len(rest) == 1:
            files.append(entry_json(path, tree[path]))
    if base and not files and not dirs:
        raise NotFound(f"{base} not found")
    return [dir_json(tree_id, d) for d in sorted(dirs)] + files


def paths_info(tree: Tree, tree_id: str, paths: Iterable[str]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        p = p.strip("/")
        if p in tree:
            out.append(entry_json(p, tree[p]))
        elif any(q.startswith(p + "/") for q in tree):
            out.append(dir_json(tree_id, p))
    return out


def upload_mode(size: int, sample: bytes) -> str:
    """Preupload rule: Xet ("lfs") for big or binary files, inline ("regular") for small text."""
    return "lfs" if size >= LFS_SIZE_THRESHOLD_BYTES or b"\x00" in sample else "regular"
