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

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from xetfs.errors import Conflict, NotFound, ValidationError
from xetfs.core.gitblob import git_blob_oid, lfs_pointer
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
    header: dict[str, Any]
    tree: Tree
    changes: list[str] = field(default_factory=list)
    size_bytes: int = 0


def _parse_lines(body: bytes) -> list[dict[str, Any]]:
    items = []
    for n, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):
            raise ValidationError(f"commit line {n} is not JSON") from None
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise ValidationError(f"commit line {n}: expected {{\"key\": ..., \"value\": {{...}}}}")
        items.append(item)
    if not items or items[0].get("key") != "header":
        raise ValidationError("a commit starts with a header line")
    return items


def apply_commit_lines(body: bytes, tree: Tree, head_oid: str,
                       resolve_sha256: Callable[[str], FileRecord | None],
                       put_blob: Callable[[str, bytes], object]) -> AppliedCommit:
    """Apply NDJSON commit operations to a copy of ``tree``; nothing is written unless all lines are valid
    (blobs are content-addressed, so writing them first leaves no visible trace on failure)."""
    items = _parse_lines(body)
    header = items[0]["value"]
    parent = header.get("parentCommit")
    if parent is not None and parent != head_oid:
        raise Conflict(f"parentCommit {parent} is not the head of the branch ({head_oid})")
    out = AppliedCommit(header, dict(tree))
    blobs: list[tuple[str, bytes]] = []
    for item in items[1:]:
        key, value = item.get("key"), item["value"]
        if key == "file":
            path, data = check_path(value.get("path")), _content(value)
            oid = git_blob_oid(data)
            out.tree[path] = {"size": len(data), "oid": oid, "sha256": hashlib.sha256(data).hexdigest()}
            blobs.append((oid, data))
            out.size_bytes += len(data)
        elif key == "lfsFile":
            path = check_path(value.get("path"))
            out.tree[path] = _lfs_entry(value, resolve_sha256)
            out.size_bytes += out.tree[path]["size"]
        elif key == "deletedFile":
            path = check_path(value.get("path"))
            if out.tree.pop(path, None) is None:
                raise NotFound(f"cannot delete {path}: no such file")
        elif key == "deletedFolder":
            prefix = check_path(str(value.get("path", "")).rstrip("/")) + "/"
            gone = [p for p in out.tree if p.startswith(prefix)]
            if not gone:
                raise NotFound(f"cannot delete folder {prefix}: no such folder")
            for p in gone:
                del out.tree[p]
        else:
            raise ValidationError(f"unsupported commit operation {key!r}")
        out.changes.append(f"{key}:{value.get('path')}")
    _check_no_file_dir_clash(out.tree)
    for oid, data in blobs:
        put_blob(oid, data)
    return out


def _content(value: dict[str, Any]) -> bytes:
    content = value.get("content", "")
    if value.get("encoding", "base64") != "base64" or not isinstance(content, str):
        raise ValidationError("file content must be a base64 string")
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("file content is not valid base64") from None


def _lfs_entry(value: dict[str, Any], resolve_sha256: Callable[[str], FileRecord | None]) -> dict[str, Any]:
    sha = str(value.get("oid", "")).lower()
    if value.get("algo", "sha256") != "sha256" or len(sha) != 64:
        raise ValidationError("lfsFile needs algo sha256 and a 64-hex oid")
    rec = resolve_sha256(sha)
    if rec is None:
        raise NotFound(f"no uploaded Xet file has sha256 {sha}: upload it through the CAS first")
    size = value.get("size")
    if size is not None and size != rec.size:
        raise ValidationError(f"lfsFile {value.get('path')}: size {size} != uploaded size {rec.size}")
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
