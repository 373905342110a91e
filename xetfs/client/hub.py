"""Hub API client (shared/hub-api.md §4): repos, revisions, trees, preupload, NDJSON commits, xet tokens, resolve.

Every call goes through ``xetfs.transport.http`` (one status -> error mapping) and, when idempotent, through the
retry schedule of ``xetfs.transport.retry``. Commits and repo creation are sent once: a retried commit whose
first attempt did land would commit twice. Given several endpoints (``URL1,URL2``: nodes of one store), a call
goes to the best live node and moves to the next one when that node fails (``xetfs.transport.endpoints``; a commit
moves only when the first node never received it).

Conventions: ``RepoRef`` carries the revision (a branch or a commit sha), URL-encoded as one path segment;
byte ranges are ``[start, end)`` and become ``Range: bytes=start-(end-1)``; hashes are strings on the wire
(``xetHash`` in Xet hex, ``lfs.oid`` in ordinary sha256 hex) and ``MerkleHash`` once parsed.

The commit body (hub-api §4.6) is NDJSON: a ``header`` line (``summary``, ``description``, optional
``parentCommit``), then one line per operation: ``file`` (base64 content), ``lfsFile`` (sha256 + size; the
server links it to the Xet file hash through the uploaded shard, §5), ``deletedFile`` / ``deletedFolder``.
``commit_ndjson`` builds it without I/O.
"""
from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from xetfs.transport import http
from xetfs.transport.params import DEFAULT_HTTP, HttpParams
from xetfs.transport.retry import DEFAULT_RETRY, RetryPolicy, retry_call
from xetfs.client.config import RepoRef, quote_path, quote_revision
from xetfs.core.hashing import MerkleHash
from xetfs.transport.endpoints import failover_for, join_endpoints, parse_endpoints
from xetfs.errors import AlreadyExists, RemoteError, ValidationError

log = logging.getLogger(__name__)

PREUPLOAD_BATCH = 256        # files per preupload request, like huggingface_hub
SAMPLE_BYTES = 512           # preupload "sample": the first bytes of the file (base64)
_ONCE = RetryPolicy.none()


# ---------------------------------------------------------------------------------------------- wire types

@dataclass(frozen=True, slots=True)
class XetToken:
    cas_url: str
    access_token: str
    exp: float                   # unix seconds


@dataclass(frozen=True, slots=True)
class TreeEntry:
    path: str
    type: str                    # "file" | "directory"
    size: int
    oid: str                     # git blob sha1 (of the content, or of the LFS pointer)
    xet_hash: MerkleHash | None = None
    sha256: str | None = None    # lfs.oid: ordinary sha256 hex

    @property
    def is_file(self) -> bool:
        return self.type == "file"


@dataclass(frozen=True, slots=True)
class PreuploadFile:
    path: str
    size: int
    sample: bytes                # first SAMPLE_BYTES bytes


@dataclass(frozen=True, slots=True)
class PreuploadAnswer:
    mode: str                    # "lfs" | "regular"
    should_ignore: bool = False
    oid: str | None = None       # existing git blob id of that path, if any


@dataclass(frozen=True, slots=True)
class AddRegular:
    path: str
    content: bytes


@dataclass(frozen=True, slots=True)
class AddXet:
    path: str
    sha256: str                  # hex
    size: int


@dataclass(frozen=True, slots=True)
class Delete:
    path: str
    is_folder: bool = False


CommitOp = AddRegular | AddXet | Delete


@dataclass(frozen=True, slots=True)
class CommitInfo:
    oid: str
    url: str


def _op_line(op: CommitOp) -> dict[str, Any]:
    if isinstance(op, AddRegular):
        return {"key": "file", "value": {"content": base64.b64encode(op.content).decode("ascii"),
                                         "path": op.path, "encoding": "base64"}}
    if isinstance(op, AddXet):
        return {"key": "lfsFile", "value": {"path": op.path, "algo": "sha256", "oid": op.sha256, "size": op.size}}
    return {"key": "deletedFolder" if op.is_folder else "deletedFile", "value": {"path": op.path}}


def commit_ndjson(ops: Sequence[CommitOp], summary: str, description: str = "",
                  parent_commit: str | None = None) -> bytes:
    header: dict[str, Any] = {"summary": summary, "description": description}
    if parent_commit is not None:
        header["parentCommit"] = parent_commit
    lines = [{"key": "header", "value": header}, *(_op_line(op) for op in ops)]
    return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)


def parse_tree_entry(obj: Any) -> TreeEntry:
    if not isinstance(obj, dict) or not isinstance(obj.get("path"), str):
        raise RemoteError(f"tree entry without a path: {str(obj)[:200]}")
    lfs: dict[str, Any] = obj["lfs"] if isinstance(obj.get("lfs"), dict) else {}
    xet = obj.get("xetHash")
    return TreeEntry(path=obj["path"], type=str(obj.get("type", "file")), size=int(obj.get("size") or 0),
                     oid=str(obj.get("oid", "")), xet_hash=MerkleHash.from_hex(xet) if isinstance(xet, str) else None,
                     sha256=str(lfs["oid"]) if "oid" in lfs else None)


def _range_header(byte_range: tuple[int, int] | None) -> dict[str, str]:
    if byte_range is None:
        return {}
    start, end = byte_range
    if end <= start:
        raise ValidationError(f"empty byte range [{start}, {end})")
    return {"Range": f"bytes={start}-{end - 1}"}


# ------------------------------------------------------------------------------------------------- client

class HubClient:
    """The Hub routes of hub-api §4.1 over one shared ``httpx.AsyncClient``."""

    def __init__(self, endpoint: str, token: str | None, client: httpx.AsyncClient, *,
                 retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self.endpoints = parse_endpoints(endpoint)       # several nodes of one store: xetfs.transport.endpoints
        self.endpoint = join_endpoints(self.endpoints)
        self.failover = failover_for(client)
        self.failover.health.register(self.endpoints)
        self.token = token
        self.http = client
        self.retry = retry

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**h, **(extra or {})}

    async def _call(self, method: str, path: str, *, policy: RetryPolicy | None = None,
                    headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        hdrs = self._headers(headers)
        # An absolute URL (a pagination link) on one of our nodes is a path any node answers.
        base = next((e for e in self.endpoints if path.startswith(e + "/")), None)
        rel = path[len(base):] if base else path
        urls = self.endpoints if not rel.startswith(("http://", "https://")) else ("",)

        async def send(endpoint: str) -> httpx.Response:
            return await http.send(self.http, method, endpoint + rel, headers=hdrs, **kwargs)

        async def attempt() -> httpx.Response:   # _ONCE calls (commits) move only if never received
            return await self.failover.call(self.http, urls, send, idempotent=policy is not _ONCE)

        return await retry_call(attempt, policy or self.retry, what=f"{method} {path}")

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return http.json_body(await self._call(method, path, **kwargs), f"{method} {path}")

    # -- repos
    async def create_repo(self, repo: RepoRef, *, private: bool = False, exist_ok: bool = False) -> str:
        body = {"name": repo.name, "organization": repo.namespace, "type": repo.repo_type, "private": private}
        try:
            obj = await self._json("POST", "/api/repos/create", json=body, policy=_ONCE)
        except AlreadyExists:
            if exist_ok:
                return f"{self.endpoints[0]}{repo.resolve_root}"
            raise
        return str(obj.get("url", "")) if isinstance(obj, dict) else ""

    async def repo_info(self, repo: RepoRef) -> dict[str, Any]:
        obj = await self._json("GET", f"{repo.api_path}/revision/{quote_revision(repo.revision)}")
        if not isinstance(obj, dict):
            raise RemoteError(f"repo info of {repo} is not an object")
        return obj

    async def revision_sha(self, repo: RepoRef) -> str:
        """The commit sha the revision resolves to."""
        sha = (await self.repo_info(repo)).get("sha")
        if not isinstance(sha, str) or not sha:
            raise RemoteError(f"repo info of {repo} has no commit sha")
        return sha

    async def branches(self, repo: RepoRef) -> dict[str, str]:
        """Branch name -> head commit (``GET .../refs``, hub-api §4.1)."""
        obj = await self._json("GET", f"{repo.api_path}/refs")
        listed = obj.get("branches") if isinstance(obj, dict) else None
        if not isinstance(listed, list):
            raise RemoteError(f"refs of {repo} have no branches list")
        return {str(b["name"]): str(b.get("targetCommit", "")) for b in listed if isinstance(b, dict) and "name" in b}

    async def list_tree(self, repo: RepoRef, path: str = "", *, recursive: bool = True) -> list[TreeEntry]:
        sub = f"/{quote_path(path.strip('/'))}" if path.strip("/") else ""
        url: str | None = f"{repo.api_path}/tree/{quote_revision(repo.revision)}{sub}"
        params: dict[str, str] | None = {"recursive": str(recursive).lower(), "expand": "false"}
        entries: list[TreeEntry] = []
        while url:
            resp = await self._call("GET", url, params=params)
            page = http.json_body(resp, f"GET {url}")
            if not isinstance(page, list):
                raise RemoteError(f"tree listing of {repo} is not a list")
            entries.extend(parse_tree_entry(e) for e in page)
            url, params = resp.links.get("next", {}).get("url"), None   # pagination (hub-api §8)
        return entries

    async def paths_info(self, repo: RepoRef, paths: Sequence[str]) -> list[TreeEntry]:
        obj = await self._json("POST", f"{repo.api_path}/paths-info/{quote_revision(repo.revision)}",
                               data={"paths": list(paths), "expand": "false"})
        if not isinstance(obj, list):
            raise RemoteError(f"paths-info of {repo} is not a list")
        return [parse_tree_entry(e) for e in obj]

    # -- uploads
    async def preupload(self, repo: RepoRef, files: Sequence[PreuploadFile]) -> dict[str, PreuploadAnswer]:
        answers: dict[str, PreuploadAnswer] = {}
        for i in range(0, len(files), PREUPLOAD_BATCH):
            batch = files[i:i + PREUPLOAD_BATCH]
            body = {"files": [{"path": f.path, "sample": base64.b64encode(f.sample[:SAMPLE_BYTES]).decode("ascii"),
                               "size": f.size} for f in batch]}
            obj = await self._json("POST", f"{repo.api_path}/preupload/{quote_revision(repo.revision)}", json=body)
            listed = obj.get("files") if isinstance(obj, dict) else None
            if not isinstance(listed, list):
                raise RemoteError(f"preupload answer for {repo} has no files list")
            for f in listed:
                mode = f.get("uploadMode") if isinstance(f, dict) else None
                if mode not in ("lfs", "regular"):
                    raise RemoteError(f"preupload answer: bad uploadMode {mode!r}")
                answers[str(f["path"])] = PreuploadAnswer(mode, bool(f.get("shouldIgnore")), f.get("oid"))
        for f in files:
            if f.path not in answers:
                raise RemoteError(f"preupload answer does not mention {f.path!r}")
        return answers

    async def commit(self, repo: RepoRef, ops: Sequence[CommitOp], summary: str, *, description: str = "",
                     parent_commit: str | None = None) -> CommitInfo:
        body = commit_ndjson(ops, summary, description, parent_commit)
        obj = await self._json("POST", f"{repo.api_path}/commit/{quote_revision(repo.revision)}", content=body,
                               headers={"Content-Type": "application/x-ndjson"}, policy=_ONCE)
        oid = obj.get("commitOid") if isinstance(obj, dict) else None
        if not isinstance(oid, str):
            raise RemoteError(f"commit answer for {repo} has no commitOid")
        return CommitInfo(oid, str(obj.get("commitUrl") or ""))

    async def xet_token(self, repo: RepoRef, mode: str = "read") -> XetToken:
        """``GET .../xet-{read|write}-token/{rev}`` -> (casUrl, accessToken, exp) from the JSON body (§4.7)."""
        if mode not in ("read", "write"):
            raise ValidationError(f"xet token mode must be read or write, got {mode!r}")
        path = f"{repo.api_path}/xet-{mode}-token/{quote_revision(repo.revision)}"
        resp = await self._call("GET", path)
        obj = http.json_body(resp, f"GET {path}")
        obj = obj if isinstance(obj, dict) else {}
        cas_url = obj.get("casUrl") or resp.headers.get("x-xet-cas-url")
        token = obj.get("accessToken") or resp.headers.get("x-xet-access-token")
        exp = obj.get("exp") or resp.headers.get("x-xet-token-expiration")
        if not cas_url or not token or exp is None:
            raise RemoteError(f"xet {mode} token answer for {repo} lacks casUrl/accessToken/exp")
        return XetToken(str(cas_url).rstrip("/"), str(token), float(exp))

    # -- resolve (regular files, or any file through server-side reconstruction: hub-api §6)
    async def resolve_head(self, repo: RepoRef, path: str) -> httpx.Headers:
        return (await self._call("HEAD", self._resolve_path(repo, path))).headers

    async def resolve(self, repo: RepoRef, path: str, byte_range: tuple[int, int] | None = None) -> bytes:
        resp = await self._call("GET", self._resolve_path(repo, path), headers=_range_header(byte_range))
        return resp.content

    async def resolve_into(self, repo: RepoRef, path: str, write: Callable[[bytes], Awaitable[object]],
                           byte_range: tuple[int, int] | None = None) -> int:
        """Stream a resolve GET into ``write``; returns the byte count. Not retried (writes are not undone)."""
        url = self.failover.preferred(self.endpoints) + self._resolve_path(repo, path)
        total = 0
        async with http.stream(self.http, "GET", url,
                               headers=self._headers({**_range_header(byte_range), "Accept-Encoding": "identity"})
                               ) as resp:
            with http.translated("GET", url):
                async for piece in resp.aiter_raw():
                    await write(piece)
                    total += len(piece)
        return total

    @staticmethod
    def _resolve_path(repo: RepoRef, path: str) -> str:
        return f"{repo.resolve_root}/resolve/{quote_revision(repo.revision)}/{quote_path(path.lstrip('/'))}"


def token_seconds_left(token: XetToken, now_unix_s: float | None = None) -> float:
    return token.exp - (time.time() if now_unix_s is None else now_unix_s)


@asynccontextmanager
async def open_hub(endpoint: str, token: str | None, params: HttpParams = DEFAULT_HTTP,
                   retry: RetryPolicy = DEFAULT_RETRY) -> AsyncIterator[HubClient]:
    """A HubClient over a new pooled AsyncClient (closed on exit); CAS clients share ``hub.http``."""
    async with http.make_http_client(params) as client:
        yield HubClient(endpoint, token, client, retry=retry)
