"""Hub API client (docs/protocol.md, "Hub API"): repos, revisions, trees, preupload, NDJSON commits, xet
tokens, resolve.

Every call goes through ``xetfs.transport.http`` (one status -> error mapping) and, when idempotent, through the
retry schedule of ``xetfs.transport.retry``. Commits and repo creation are sent once: a retried commit whose
first attempt did land would commit twice. Given several endpoints (``URL1,URL2``: nodes of one store), a call
goes to the best live node and moves to the next one when that node fails (``xetfs.transport.endpoints``; a commit
moves only when the first node never received it).

Conventions: ``RepoRef`` carries the revision (a branch or a commit sha), URL-encoded as one path segment;
byte ranges are ``[start, end)`` and become ``Range: bytes=start-(end-1)``; hashes are strings on the wire
(``xetHash`` in Xet hex, ``lfs.oid`` in ordinary sha256 hex) and ``MerkleHash`` once parsed.

The wire shapes (tree entries, preupload, the NDJSON commit body, xet tokens) are built and parsed without
I/O in ``xetfs.protocol.hub``; this module only sends them.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import httpx

from xetfs.transport import http
from xetfs.transport.params import DEFAULT_HTTP, HttpParams
from xetfs.transport.retry import DEFAULT_RETRY, RetryPolicy, retry_call
from xetfs.client.config import RepoRef, quote_path, quote_revision
from xetfs.transport.endpoints import failover_for, join_endpoints, parse_endpoints
from xetfs.errors import AlreadyExists, RemoteError, ValidationError
from xetfs.protocol.hub import (CommitInfo, CommitOp, PreuploadAnswer, PreuploadFile, RepoInfo, TreeEntry, XetToken,
                                commit_ndjson, parse_branches, parse_commit_answer, parse_movable_refs,
                                parse_preupload_answer, parse_repo_info, parse_tree_entry, parse_xet_token,
                                preupload_body)

log = logging.getLogger(__name__)

PREUPLOAD_BATCH = 256        # files per preupload request, like huggingface_hub
_ONCE = RetryPolicy.none()


def _range_header(byte_range: tuple[int, int] | None) -> dict[str, str]:
    if byte_range is None:
        return {}
    start, end = byte_range
    if end <= start:
        raise ValidationError(f"empty byte range [{start}, {end})")
    return {"Range": f"bytes={start}-{end - 1}"}


# ------------------------------------------------------------------------------------------------- client

class HubClient:
    """The Hub routes (docs/protocol.md, "Hub API") over one shared ``httpx.AsyncClient``."""

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
                    headers: dict[str, str] | None = None, params: dict[str, str] | None = None,
                    content: bytes | None = None, json: object = None, data: http.Form | None = None
                    ) -> httpx.Response:
        hdrs = self._headers(headers)
        # An absolute URL (a pagination link) on one of our nodes is a path any node answers.
        base = next((e for e in self.endpoints if path.startswith(e + "/")), None)
        rel = path[len(base):] if base else path
        urls = self.endpoints if not rel.startswith(("http://", "https://")) else ("",)

        async def send(endpoint: str) -> httpx.Response:
            return await http.send(self.http, method, endpoint + rel, headers=hdrs, params=params, content=content,
                                   json=json, data=data)

        async def attempt() -> httpx.Response:   # _ONCE calls (commits) move only if never received
            return await self.failover.call(self.http, urls, send, idempotent=policy is not _ONCE)

        return await retry_call(attempt, policy or self.retry, what=f"{method} {path}", on_retry=self.failover.retried)

    async def _json(self, method: str, path: str, *, policy: RetryPolicy | None = None,
                    headers: dict[str, str] | None = None, content: bytes | None = None, json: object = None,
                    data: http.Form | None = None) -> object:
        resp = await self._call(method, path, policy=policy, headers=headers, content=content, json=json, data=data)
        return http.json_body(resp, f"{method} {path}")

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

    async def repo_info(self, repo: RepoRef) -> RepoInfo:
        obj = await self._json("GET", f"{repo.api_path}/revision/{quote_revision(repo.revision)}")
        return parse_repo_info(obj, f"repo info of {repo}")

    async def revision_sha(self, repo: RepoRef) -> str:
        """The commit sha the revision resolves to."""
        return (await self.repo_info(repo)).sha

    async def branches(self, repo: RepoRef) -> dict[str, str]:
        """Branch name -> head commit (``GET .../refs``)."""
        return parse_branches(await self._json("GET", f"{repo.api_path}/refs"), f"refs of {repo}")

    async def movable_refs(self, repo: RepoRef) -> dict[str, str]:
        """Branches and pull requests (``refs/pr/N``) -> head commit: one small request, the follow poll's."""
        resp = await self._call("GET", f"{repo.api_path}/refs", params={"include_prs": "1"})
        return parse_movable_refs(http.json_body(resp, f"GET refs of {repo}"), f"refs of {repo}")

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
            url, params = resp.links.get("next", {}).get("url"), None   # pagination: Link rel=next
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
            obj = await self._json("POST", f"{repo.api_path}/preupload/{quote_revision(repo.revision)}",
                                   json=preupload_body(batch))
            answers.update(parse_preupload_answer(obj, f"preupload answer for {repo}"))
        for f in files:
            if f.path not in answers:
                raise RemoteError(f"preupload answer does not mention {f.path!r}")
        return answers

    async def commit(self, repo: RepoRef, ops: Sequence[CommitOp], summary: str, *, description: str = "",
                     parent_commit: str | None = None) -> CommitInfo:
        body = commit_ndjson(ops, summary, description, parent_commit)
        obj = await self._json("POST", f"{repo.api_path}/commit/{quote_revision(repo.revision)}", content=body,
                               headers={"Content-Type": "application/x-ndjson"}, policy=_ONCE)
        return parse_commit_answer(obj, f"commit answer for {repo}")

    async def xet_token(self, repo: RepoRef, mode: str = "read") -> XetToken:
        """``GET .../xet-{read|write}-token/{rev}`` -> (casUrl, accessToken, exp) from the JSON body or the headers."""
        if mode not in ("read", "write"):
            raise ValidationError(f"xet token mode must be read or write, got {mode!r}")
        path = f"{repo.api_path}/xet-{mode}-token/{quote_revision(repo.revision)}"
        resp = await self._call("GET", path)
        return parse_xet_token(http.json_body(resp, f"GET {path}"), resp.headers, f"xet {mode} token for {repo}")

    # -- resolve (regular files, or any file through server-side reconstruction)
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


@asynccontextmanager
async def open_hub(endpoint: str, token: str | None, params: HttpParams = DEFAULT_HTTP,
                   retry: RetryPolicy = DEFAULT_RETRY) -> AsyncIterator[HubClient]:
    """A HubClient over a new pooled AsyncClient (closed on exit); CAS clients share ``hub.http``."""
    async with http.make_http_client(params) as client:
        yield HubClient(endpoint, token, client, retry=retry)
