"""CAS API routes (docs/protocol.md, CAS API): parse, authorize, call ``services``, format.

| route | notes |
|---|---|
| GET  /v1/reconstructions/{file}, /v2/… | ``Range`` honoured; 416 at/after EOF; end clamped; each term carries ``verification_hash`` |
| GET/POST /v1/reconstructions | batch form: ``?file_id=…`` (xet-core client) or JSON ``[{"hash":…}]`` (spec) |
| POST /v1/xorbs/{prefix}/{xorb} | validated in a thread, stored atomically, ``{"was_inserted": bool}`` |
| HEAD /v1/xorbs/{prefix}/{xorb}, /v1/files/{file} | ``Content-Length`` = stored xorb size / file size |
| POST /v1/shards, /v2/shards | validated; v1 ``{"result": 0|1}``, v2 NDJSON events ending in ``{"type":"result"}`` |
| GET  /v1/chunks/{default|default-merkledb}/{chunk} | global dedup: a full shard with footer, or 404 |
| POST /v1/xorb-grants/… | always 404 (client falls back to POST /v1/xorbs; a 200 would lose data) |
| POST /v1/telemetry | accepted and dropped |

Reconstructions are repo-bound (``services.cas.readable_file``). Fetch URLs (``services.cas.fetch_urls``)
are signed for exactly the byte ranges of the terms: a range covering a whole xorb may be a presigned GET
on a store that presigns (without ``--proxy-reads``); every other range is the node's own ``/v1/data`` URL
(``routes.data``). Both live ``DATA_URL_TTL_S`` (1 h), far
above how long a reader keeps a plan (300 s), so a cached plan never holds an expired URL; a 403 on an
expired one makes the client ask for a fresh reconstruction.
"""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from xetfs.core.hashing import MerkleHash
from xetfs.core.reconstruction import parse_range_header
from xetfs.protocol.reconstruction import to_json_v1, to_json_v2
from xetfs.errors import NotFound, ValidationError
from xetfs.server.context import State, state_of
from xetfs.server.metadata.store import FileRecord
from xetfs.server.auth import CasClaims
from xetfs.server.request import base_url, hash_param, json_body, range_header, read_body, upload_slot
from xetfs.server.services.cas import fetch_urls, plan, readable_file, reupload_xorb, store_shard, store_xorb, \
    token_repo
from xetfs.server.services.claims import verify_sha256_claims
from xetfs.server.services.dedup import dedup_shard
from xetfs.server.services.validation import MAX_SHARD_BODY_BYTES, MAX_XORB_BODY_BYTES, ValidShard, \
    check_shard, check_xorb

PREFIXES = ("default", "default-merkledb")
MAX_BATCH_FILES = 1000


def _prefix(request: web.Request) -> None:
    if request.match_info["prefix"] not in PREFIXES:
        raise NotFound(f"unknown prefix {request.match_info['prefix']!r}")


def _answer(st: State, base: str, claims: CasClaims, rec: FileRecord, byte_range: tuple[int, int] | None,
            version: int) -> dict[str, Any]:
    r = plan(st, rec, byte_range)
    return (to_json_v2 if version == 2 else to_json_v1)(r, fetch_urls(st, base, r, token_repo(st, claims)))


async def _reconstruction(request: web.Request, version: int) -> web.Response:
    st = state_of(request)
    claims = st.auth.cas_claims(request.headers.get("Authorization"), "read")
    fh = hash_param(request, "file_id")
    rec = await st.run(readable_file, st, claims, fh)
    byte_range = parse_range_header(range_header(request), rec.size)
    obj = await st.run(_answer, st, base_url(request), claims, rec, byte_range, version)
    st.metrics.inc("xetfs_cas_reconstructions_total")
    return web.json_response(obj)


async def _reconstruction_v1(request: web.Request) -> web.Response:
    return await _reconstruction(request, 1)


async def _reconstruction_v2(request: web.Request) -> web.Response:
    return await _reconstruction(request, 2)


async def _batch_reconstruction(request: web.Request) -> web.Response:
    """``{"files": {file: [terms]}, "fetch_info": {xorb: [...]}}`` (v1 shapes)."""
    st = state_of(request)
    claims = st.auth.cas_claims(request.headers.get("Authorization"), "read")
    if request.method == "POST":
        body = await json_body(request, 1 << 20, empty=b"[]")
        if not isinstance(body, list) or len(body) > MAX_BATCH_FILES:
            raise ValidationError(f'the batch body is a list of at most {MAX_BATCH_FILES} {{"hash": FILE}}')
        items = [item.get("hash") if isinstance(item, dict) else item for item in body]
        ids = [i for i in items if isinstance(i, str)]
        if len(ids) != len(items):
            raise ValidationError('each batch item is {"hash": FILE} or FILE (a hex string)')
    else:
        ids = request.query.getall("file_id", [])
    files: dict[str, Any] = {}
    fetch_info: dict[str, list[Any]] = {}
    for file_id in ids:
        rec = await st.run(readable_file, st, claims, MerkleHash.from_hex(file_id))
        obj = await st.run(_answer, st, base_url(request), claims, rec, None, 1)
        files[file_id] = obj["terms"]
        for xorb, entries in obj["fetch_info"].items():
            have = fetch_info.setdefault(xorb, [])
            have += [e for e in entries if e not in have]
    st.metrics.inc("xetfs_cas_reconstructions_total", len(ids))
    return web.json_response({"files": files, "fetch_info": fetch_info})


async def _post_xorb(request: web.Request) -> web.Response:
    st = state_of(request)
    _prefix(request)
    claims = st.auth.cas_claims(request.headers.get("Authorization"), "write")
    xorb = hash_param(request, "hash")
    await st.run(token_repo, st, claims)          # a token of a deleted repo uploads nothing
    with upload_slot(request, claims.sub + ":" + claims.repo):
        body = await read_body(request, MAX_XORB_BODY_BYTES)
        if await st.run(st.meta.has_xorb, xorb):
            return web.json_response({"was_inserted": await st.run(reupload_xorb, st, body, xorb)})
        valid = await st.run(check_xorb, body, str(xorb))
        inserted = await st.run(store_xorb, st, valid)
    if inserted:
        st.metrics.inc("xetfs_cas_xorb_upload_bytes_total", len(body))
        st.metrics.inc("xetfs_cas_xorbs_stored_total")
        await st.run(st.audit.write, claims.sub, claims.repo, "xorb", str(xorb), len(body))
    return web.json_response({"was_inserted": inserted})


async def _accept_shard(request: web.Request) -> tuple[ValidShard, bool]:
    st = state_of(request)
    claims = st.auth.cas_claims(request.headers.get("Authorization"), "write")
    await st.run(token_repo, st, claims)          # a token of a deleted repo registers nothing
    body = await read_body(request, MAX_SHARD_BODY_BYTES)
    valid = await st.run(check_shard, body, st.meta.xorb)
    await st.run(verify_sha256_claims, st, valid)
    new = await st.run(store_shard, st, valid, body, claims)
    st.metrics.inc("xetfs_cas_shard_upload_bytes_total", len(body))
    files = ",".join(str(f.hash) for f in valid.files)
    await st.run(st.audit.write, claims.sub, claims.repo, "shard", f"{valid.hash} files={files}", len(body))
    return valid, new


async def _post_shard_v1(request: web.Request) -> web.Response:
    _, new = await _accept_shard(request)
    return web.json_response({"result": 1 if new else 0})


async def _post_shard_v2(request: web.Request) -> web.Response:
    valid, new = await _accept_shard(request)
    n = len(valid.files)
    events = [{"type": "validating", "verified": n, "total": n}, {"type": "result", "result": 1 if new else 0}]
    return web.Response(text="".join(json.dumps(e) + "\n" for e in events), content_type="application/x-ndjson")


async def _chunks(request: web.Request) -> web.Response:
    st = state_of(request)
    _prefix(request)
    claims = st.auth.cas_claims(request.headers.get("Authorization"), "read")
    chunk = hash_param(request, "hash")
    st.metrics.inc("xetfs_cas_dedup_queries_total")
    data = await st.run(dedup_shard, st, chunk, claims)
    if data is None:
        raise NotFound(f"chunk {chunk} unknown")
    st.metrics.inc("xetfs_cas_dedup_hits_total")
    return web.Response(body=data, content_type="application/octet-stream")


async def _xorb_grant(request: web.Request) -> web.Response:
    raise NotFound("upload grants are not offered: POST /v1/xorbs/{prefix}/{hash}")


async def _head_xorb(request: web.Request) -> web.Response:
    st = state_of(request)
    _prefix(request)
    st.auth.cas_claims(request.headers.get("Authorization"), "read")
    rec = await st.run(st.meta.xorb, hash_param(request, "hash"))
    if rec is None:
        raise NotFound("xorb not stored")
    return web.Response(headers={"Content-Length": str(rec.stored_bytes)})


async def _head_file(request: web.Request) -> web.Response:
    st = state_of(request)
    claims = st.auth.cas_claims(request.headers.get("Authorization"), "read")
    rec = await st.run(readable_file, st, claims, hash_param(request, "file_id"))
    return web.Response(headers={"Content-Length": str(rec.size)})


async def _telemetry(request: web.Request) -> web.Response:
    await read_body(request, 1 << 20)
    return web.json_response({})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/reconstructions/{file_id}", _reconstruction_v1)
    r.add_get("/v2/reconstructions/{file_id}", _reconstruction_v2)
    r.add_get("/v1/reconstructions", _batch_reconstruction)
    r.add_post("/v1/reconstructions", _batch_reconstruction)
    r.add_post("/v1/xorbs/{prefix}/{hash}", _post_xorb)
    r.add_head("/v1/xorbs/{prefix}/{hash}", _head_xorb)
    r.add_head("/v1/files/{file_id}", _head_file)
    r.add_post("/v1/shards", _post_shard_v1)
    r.add_post("/v2/shards", _post_shard_v2)
    r.add_get("/v1/chunks/{prefix}/{hash}", _chunks)
    r.add_post("/v1/xorb-grants/{prefix}/{hash}", _xorb_grant)
    r.add_post("/v1/telemetry", _telemetry)
