"""``GET|HEAD /{repo}/resolve/{rev}/{path}`` (docs/protocol.md, Hub API): file bytes for plain HTTP clients.

HEAD and GET answer ``X-Repo-Commit``, ``ETag`` (sha256 for Xet files, git blob oid otherwise),
``Content-Length`` and ``Accept-Ranges``; Xet files add ``X-Xet-Hash``, ``X-Linked-Etag``, ``X-Linked-Size``
and ``Link: <…/xet-read-token/{commit}>; rel="xet-auth"`` so hf_xet downloads them through the CAS.

GET serves bytes, with ``Range`` -> 206 + ``Content-Range``. A Xet file is reconstructed server-side
(``services.assemble``) in bounded memory, every chunk checked against its hash; a damaged stored copy
found part-way drops the connection (the client sees a short body, never wrong bytes or an error page
inside the 200). The file hash comes from the repo's own tree at the resolved
revision, so these reads are bound to the repo the Hub token may read, like the CAS reconstructions.
"""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from xetfs.core.hashing import MerkleHash
from xetfs.core.reconstruction import parse_range_header
from xetfs.server.context import state_of
from xetfs.errors import XetError
from xetfs.server.errors import EntryNotFound, RepoNotFound, StreamAborted
from xetfs.server.names import valid_repo_part
from xetfs.server.request import base_url, range_header, repo_access
from xetfs.server.services.assemble import xet_range
from xetfs.server.services.cas import file_record
from xetfs.server.services.repos import resolve_rev

log = logging.getLogger(__name__)


def _parse(request: web.Request) -> tuple[str, str, str]:
    raw = request.rel_url.raw_path
    head, _, tail = raw.partition("/resolve/")
    ns, name = (unquote(s) for s in head.strip("/").split("/")[-2:])
    if not valid_repo_part(ns) or not valid_repo_part(name):
        raise RepoNotFound(f"no repository {ns[:100]!r}/{name[:100]!r}")
    rev, _, path = tail.partition("/")
    return f"{ns}/{name}", unquote(rev), "/".join(unquote(p) for p in path.split("/"))


def _headers(request: web.Request, repo_type: str, repo_id: str, commit_oid: str,
             entry: dict[str, Any]) -> dict[str, str]:
    h = {"X-Repo-Commit": commit_oid, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    if "xet" in entry:
        token_url = f"{base_url(request)}/api/{repo_type}s/{repo_id}/xet-read-token/{quote(commit_oid, safe='')}"
        h.update({"ETag": f'"{entry["sha256"]}"', "X-Linked-Etag": f'"{entry["sha256"]}"',
                  "X-Linked-Size": str(entry["size"]), "X-Xet-Hash": entry["xet"],
                  "Link": f'<{token_url}>; rel="xet-auth"'})
    else:
        h["ETag"] = f'"{entry["oid"]}"'
    return h


async def _resolve(request: web.Request, repo_type: str) -> web.StreamResponse:
    st = state_of(request)
    repo_id, rev, path = _parse(request)
    _, repo = await repo_access(request, "read", repo_type, repo_id)
    commit = await st.run(resolve_rev, st, repo, rev)
    tree = await st.run(st.meta.tree, commit.tree)
    entry = tree.get(path)
    if entry is None:
        raise EntryNotFound(f"{path} not found in {repo_id}@{rev}")
    headers = _headers(request, repo_type, repo_id, commit.oid, entry)
    size = int(entry["size"])
    byte_range = parse_range_header(range_header(request), size)
    start, end = byte_range if byte_range is not None else (0, size)
    status = 200
    if byte_range is not None and size:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return web.Response(status=status, headers=headers)
    st.metrics.inc("xetfs_hub_resolve_bytes_served_total", end - start)
    if "xet" not in entry:
        data = await st.run(st.storage.get, f"blobs/{entry['oid']}")
        return web.Response(status=status, headers=headers, body=data[start:end])
    rec = await st.run(file_record, st, MerkleHash.from_hex(entry["xet"]))
    resp = web.StreamResponse(status=status, headers=headers)
    await resp.prepare(request)
    try:
        if end > start:
            async for piece in xet_range(st, rec, start, end):
                await resp.write(piece)
    except XetError as exc:
        log.error("GET %s: %s; dropping the connection", request.path, exc)
        raise StreamAborted(str(exc)) from exc
    await resp.write_eof()
    return resp


async def _resolve_model(request: web.Request) -> web.StreamResponse:
    return await _resolve(request, "model")


async def _resolve_dataset(request: web.Request) -> web.StreamResponse:
    return await _resolve(request, "dataset")


async def _resolve_space(request: web.Request) -> web.StreamResponse:
    return await _resolve(request, "space")


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/datasets/{ns}/{name}/resolve/{tail:.+}", _resolve_dataset)
    r.add_get("/spaces/{ns}/{name}/resolve/{tail:.+}", _resolve_space)
    r.add_get("/{ns}/{name}/resolve/{tail:.+}", _resolve_model)
