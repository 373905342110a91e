"""Hub API wire shapes, sans-IO: tree entries, preupload, the NDJSON commit body, xet tokens, refs.

Builders return bytes or JSON-ready dicts; parsers take decoded JSON and return frozen dataclasses. A parser of
an *answer* (client side) raises ``RemoteError`` on a bad shape; ``parse_commit_ndjson`` parses a *request*
(server side) and raises ``ValidationError``. See docs/protocol.md, "Hub API".

Hashes are strings on the wire (``xetHash`` in Xet hex, ``lfs.oid`` in ordinary sha256 hex) and
``MerkleHash`` once parsed.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict


from xetfs.core.hashing import MerkleHash
from xetfs.errors import RemoteError, ValidationError

SAMPLE_BYTES = 512           # preupload "sample": the first bytes of the file (base64)


# ------------------------------------------------------------------------------------------------ xet token

@dataclass(frozen=True, slots=True)
class XetToken:
    """``GET /api/{type}s/{repo}/xet-{read|write}-token/{rev}``: where the CAS is and how to call it."""

    cas_url: str
    access_token: str
    exp: float                   # unix seconds


def parse_xet_token(obj: object, headers: Mapping[str, str], what: str) -> XetToken:
    """The token from the JSON body (``casUrl``, ``accessToken``, ``exp``), else from the ``X-Xet-*`` headers."""
    body: Mapping[str, object] = obj if isinstance(obj, dict) else {}
    cas_url = body.get("casUrl") or headers.get("x-xet-cas-url")
    token = body.get("accessToken") or headers.get("x-xet-access-token")
    exp = body.get("exp") or headers.get("x-xet-token-expiration")
    if not cas_url or not token or not isinstance(exp, (int, float, str)):
        raise RemoteError(f"{what}: answer lacks casUrl/accessToken/exp")
    try:
        return XetToken(str(cas_url).rstrip("/"), str(token), float(exp))
    except ValueError:
        raise RemoteError(f"{what}: exp {exp!r} is not a number") from None


# ------------------------------------------------------------------------------------------------ revisions

@dataclass(frozen=True, slots=True)
class RepoInfo:
    """``GET /api/{type}s/{repo}/revision/{rev}``: the commit the revision resolves to, and when it was made."""

    sha: str
    last_modified: str | None = None     # ISO 8601, e.g. "2024-05-01T12:00:00.000Z"


def parse_repo_info(obj: object, what: str) -> RepoInfo:
    sha = obj.get("sha") if isinstance(obj, dict) else None
    if not isinstance(obj, dict) or not isinstance(sha, str) or not sha:
        raise RemoteError(f"{what}: the Hub did not resolve the revision to a commit")
    modified = obj.get("lastModified")
    return RepoInfo(sha, modified if isinstance(modified, str) else None)


# ------------------------------------------------------------------------------------------- tree entries

@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One entry of ``GET .../tree/{rev}`` or ``POST .../paths-info/{rev}``."""

    path: str
    type: str                    # "file" | "directory"
    size: int
    oid: str                     # git blob sha1 (of the content, or of the LFS pointer)
    xet_hash: MerkleHash | None = None
    sha256: str | None = None    # lfs.oid: ordinary sha256 hex

    @property
    def is_file(self) -> bool:
        return self.type == "file"


def parse_tree_entry(obj: object) -> TreeEntry:
    if not isinstance(obj, dict) or not isinstance(obj.get("path"), str):
        raise RemoteError(f"tree entry without a path: {str(obj)[:200]}")
    lfs = obj["lfs"] if isinstance(obj.get("lfs"), dict) else {}
    xet = obj.get("xetHash")
    try:
        return TreeEntry(path=obj["path"], type=str(obj.get("type", "file")), size=int(obj.get("size") or 0),
                         oid=str(obj.get("oid", "")),
                         xet_hash=MerkleHash.from_hex(xet) if isinstance(xet, str) else None,
                         sha256=str(lfs["oid"]) if "oid" in lfs else None)
    except (TypeError, ValueError) as exc:
        raise RemoteError(f"tree entry {obj['path']!r}: {exc}") from None


def parse_branches(obj: object, what: str) -> dict[str, str]:
    """``GET .../refs`` -> branch name -> head commit."""
    listed = obj.get("branches") if isinstance(obj, dict) else None
    if not isinstance(listed, list):
        raise RemoteError(f"{what}: no branches list")
    return {str(b["name"]): str(b.get("targetCommit", "")) for b in listed if isinstance(b, dict) and "name" in b}


def parse_movable_refs(obj: object, what: str) -> dict[str, str]:
    """``GET .../refs?include_prs=1`` -> the refs that move (branches by name, pull requests as ``refs/pr/N``)
    -> head commit. Tags are left out: a tag names one commit for good."""
    heads = parse_branches(obj, what)
    prs = obj.get("pullRequests") if isinstance(obj, dict) else None
    for p in prs if isinstance(prs, list) else []:
        if isinstance(p, dict) and isinstance(p.get("ref") or p.get("name"), str):
            heads[str(p.get("ref") or p["name"])] = str(p.get("targetCommit", ""))
    return heads


# ---------------------------------------------------------------------------------------------- preupload

@dataclass(frozen=True, slots=True)
class PreuploadFile:
    path: str
    size: int
    sample: bytes                # first SAMPLE_BYTES bytes


@dataclass(frozen=True, slots=True)
class PreuploadAnswer:
    mode: Literal["lfs", "regular"]
    should_ignore: bool = False
    oid: str | None = None       # existing git blob id of that path, if any


class PreuploadFileJson(TypedDict):
    path: str
    sample: str                  # base64 of at most SAMPLE_BYTES bytes
    size: int


class PreuploadBody(TypedDict):
    files: list[PreuploadFileJson]


def preupload_body(files: Sequence[PreuploadFile]) -> PreuploadBody:
    return {"files": [{"path": f.path, "sample": base64.b64encode(f.sample[:SAMPLE_BYTES]).decode("ascii"),
                       "size": f.size} for f in files]}


def parse_preupload_answer(obj: object, what: str) -> dict[str, PreuploadAnswer]:
    """``{"files": [{"path", "uploadMode", "shouldIgnore", "oid"}]}`` -> path -> answer."""
    listed = obj.get("files") if isinstance(obj, dict) else None
    if not isinstance(listed, list):
        raise RemoteError(f"{what}: no files list")
    answers: dict[str, PreuploadAnswer] = {}
    for f in listed:
        mode = f.get("uploadMode") if isinstance(f, dict) else None
        if not isinstance(f, dict) or mode not in ("lfs", "regular") or "path" not in f:
            raise RemoteError(f"{what}: bad file answer {str(f)[:200]}")
        oid = f.get("oid")
        answers[str(f["path"])] = PreuploadAnswer("lfs" if mode == "lfs" else "regular", bool(f.get("shouldIgnore")),
                                                  oid if isinstance(oid, str) else None)
    return answers


# -------------------------------------------------------------------------------------- NDJSON commit body

@dataclass(frozen=True, slots=True)
class AddRegular:
    """``{"key": "file", "value": {"content": <base64>, "path", "encoding": "base64"}}``."""

    path: str
    content: bytes


@dataclass(frozen=True, slots=True)
class AddXet:
    """``{"key": "lfsFile", "value": {"path", "algo": "sha256", "oid": <sha256 hex>, "size"}}``; the server
    links the sha256 to a Xet file it already holds (uploaded through the CAS with its shard)."""

    path: str
    sha256: str                  # hex
    size: int | None             # None only when parsed from a request that left it out


@dataclass(frozen=True, slots=True)
class Delete:
    """``{"key": "deletedFile" | "deletedFolder", "value": {"path"}}``."""

    path: str
    is_folder: bool = False


CommitOp = AddRegular | AddXet | Delete


@dataclass(frozen=True, slots=True)
class CommitHeader:
    """``{"key": "header", "value": {"summary", "description", "parentCommit"?}}``: always the first line."""

    summary: str
    description: str = ""
    parent_commit: str | None = None


class HeaderValue(TypedDict):
    summary: str
    description: str
    parentCommit: NotRequired[str]


class FileValue(TypedDict):
    content: str
    path: str
    encoding: Literal["base64"]


class LfsFileValue(TypedDict):
    path: str
    algo: Literal["sha256"]
    oid: str
    size: NotRequired[int]


class PathValue(TypedDict):
    path: str


class CommitLine(TypedDict):
    key: Literal["header", "file", "lfsFile", "deletedFile", "deletedFolder"]
    value: HeaderValue | FileValue | LfsFileValue | PathValue


def commit_line(op: CommitOp) -> CommitLine:
    if isinstance(op, AddRegular):
        return {"key": "file", "value": {"content": base64.b64encode(op.content).decode("ascii"),
                                         "path": op.path, "encoding": "base64"}}
    if isinstance(op, AddXet):
        lfs: LfsFileValue = {"path": op.path, "algo": "sha256", "oid": op.sha256}
        if op.size is not None:
            lfs["size"] = op.size
        return {"key": "lfsFile", "value": lfs}
    return {"key": "deletedFolder" if op.is_folder else "deletedFile", "value": {"path": op.path}}


def commit_ndjson(ops: Sequence[CommitOp], summary: str, description: str = "",
                  parent_commit: str | None = None) -> bytes:
    """The body of ``POST .../commit/{rev}`` (``Content-Type: application/x-ndjson``)."""
    header: HeaderValue = {"summary": summary, "description": description}
    if parent_commit is not None:
        header["parentCommit"] = parent_commit
    lines: list[CommitLine] = [{"key": "header", "value": header}, *(commit_line(op) for op in ops)]
    return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)


def parse_commit_ndjson(body: bytes) -> tuple[CommitHeader, list[CommitOp]]:
    """A commit request body -> its header and operations, in order (shape only: paths are the caller's).

    Blank lines are skipped; ``ValidationError`` for a line that is not ``{"key": ..., "value": {...}}``, a
    body that does not start with the header, bad base64, a non-sha256 ``lfsFile`` or an unknown key.
    """
    items: list[tuple[int, str, dict[str, object]]] = []
    for n, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):      # RecursionError: hostile nesting
            raise ValidationError(f"commit line {n} is not JSON") from None
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise ValidationError(f"commit line {n}: expected {{\"key\": ..., \"value\": {{...}}}}")
        items.append((n, str(item.get("key")), item["value"]))
    if not items or items[0][1] != "header":
        raise ValidationError("a commit starts with a header line")
    head = items[0][2]
    parent = head.get("parentCommit")
    header = CommitHeader(str(head.get("summary") or ""), str(head.get("description") or ""),
                          str(parent) if parent is not None else None)
    return header, [_parse_op(n, key, value) for n, key, value in items[1:]]


def _parse_op(n: int, key: str, value: dict[str, object]) -> CommitOp:
    path = value.get("path")
    if not isinstance(path, str):
        raise ValidationError(f"commit line {n}: {key} without a path")
    if key == "file":
        content = value.get("content", "")
        if value.get("encoding", "base64") != "base64" or not isinstance(content, str):
            raise ValidationError("file content must be a base64 string")
        try:
            return AddRegular(path, base64.b64decode(content, validate=True))
        except (binascii.Error, ValueError):
            raise ValidationError("file content is not valid base64") from None
    if key == "lfsFile":
        sha = str(value.get("oid", "")).lower()
        size = value.get("size")
        if value.get("algo", "sha256") != "sha256" or len(sha) != 64:
            raise ValidationError("lfsFile needs algo sha256 and a 64-hex oid")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise ValidationError(f"lfsFile {path}: size must be a non-negative integer")
        return AddXet(path, sha, size)
    if key in ("deletedFile", "deletedFolder"):
        return Delete(path, is_folder=key == "deletedFolder")
    raise ValidationError(f"unsupported commit operation {key!r}")


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """The answer to a commit: ``{"commitOid", "commitUrl"}``."""

    oid: str
    url: str


def parse_commit_answer(obj: object, what: str) -> CommitInfo:
    oid = obj.get("commitOid") if isinstance(obj, dict) else None
    if not isinstance(obj, dict) or not isinstance(oid, str):
        raise RemoteError(f"{what}: no commitOid")
    return CommitInfo(oid, str(obj.get("commitUrl") or ""))
