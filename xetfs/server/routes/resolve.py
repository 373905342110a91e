"""``/{repo}/resolve/{rev}/{path}`` HEAD and GET (hub-api.md §4.8, §6): file metadata and plain-HTTP reads.

HEAD (and GET) carry ``X-Repo-Commit`` and ``ETag`` (git blob sha1 for regular files, sha256 for Xet files);
Xet files add ``X-Xet-Hash``, ``X-Linked-Etag``, ``X-Linked-Size`` and
``Link: <…/xet-read-token/{commit}>; rel="xet-auth"`` so hf_xet downloads them through the CAS.

GET serves bytes, with ``Range`` -> 206 + ``Content-Range``. A Xet file is reconstructed server-side for plain
HTTP clients (HfFileSystem, curl): plan the range from the metadata (§7.3), then per term read the serialized
chunk records of the needed chunks from the stored xorb in batches of ~8 MiB, decode them in a worker thread
(§4.3) and stream them, skipping ``offset_into_first_range`` and cutting the tail. Memory stays bounded by the
batch size whatever the file size. The file hash comes from the repo's own tree at the resolved revision,
so these reads are bound to the repo the Hub token may read, like the CAS reconstructions.
"""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from xetfs.core.hashing import MerkleHash
from xetfs.core.reconstruction import parse_range_header
from xetfs.core.xorb import decode_chunks
from xetfs.server.app import EntryNotFound, State, state_of
from xetfs.server.routes.cas import file_record, plan, xorb_key
from xetfs.server.routes.hub import base_url, lookup_repo, principal, resolve_rev
from xetfs.server.metadata.store import FileRecord

log = logging.getLogger(__name__)

DECODE_BATCH_BYTES = 8 * 1024 * 1024


def _decode_span(st: State, xorb: str, start: int, end: int) -> bytes:
    """Decode the chunk records in serialized bytes ``[start, end)`` of a stored xorb."""
    return b"".join(decode_chunks(st.storage.get_range(xorb_key(xorb), start, end - 1)))


async def stream_xet_range(st: State, rec: FileRecord, start: int, end: int, resp: web.StreamResponse) -> int:
    """Write file bytes ``[start, end)`` to ``resp``; returns the bytes written."""
    r = await st.run(plan, st, rec, (start, end), False)
    skip, remaining = r.offset_into_first_range, end - start
    for term in r.terms:
        xrec = await st.run(st.meta.xorb, term.xorb_hash)
        assert xrec is not None
        offsets, s = xrec.chunk_offsets, term.chunk_start
        while s < term.chunk_end and remaining > 0:
            e = s + 1
            while e < term.chunk_end and offsets[e + 1] - offsets[s] <= DECODE_BATCH_BYTES:
                e += 1
            data = await st.run(_decode_span, st, str(term.xorb_hash), offsets[s], offsets[e])
            s = e
            if skip >= len(data):
                skip -= len(data)
                continue
            piece = memoryview(data)[skip:skip + remaining]
            skip = 0
            remaining -= len(piece)
            await resp.write(piece)
    return end - start - remaining


def _parse(request: web.Request, repo_type: str) -> tuple[str, str, str]:
    raw = request.rel_url.raw_path
    head, _, tail = raw.partition("/resolve/")
    segs = head.strip("/").split("/")[-2:]
    rev, _, path = tail.partition("/")
    return "/".join(unquote(s) for s in segs), unquote(rev), "/".join(unquote(p) for p in path.split("/"))


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
    repo_id, rev, path = _parse(request, repo_type)
    await principal(request, "read", repo_id)
    repo = await st.run(lookup_repo, st, repo_type, repo_id)
    commit = await st.run(resolve_rev, st, repo, rev)
    tree = await st.run(st.meta.tree, commit.tree)
    entry = tree.get(path)
    if entry is None:
        raise EntryNotFound(f"{path} not found in {repo_id}@{rev}")
    headers = _headers(request, repo_type, repo_id, commit.oid, entry)
    size = int(entry["size"])
    byte_range = parse_range_header(request.headers.get("Range"), size)
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
    if end > start:
        await stream_xet_range(st, rec, start, end, resp)
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
