"""CAS API routes (shared/xet-protocol.md §7): thin handlers over validation, storage and metadata.

| route | notes |
|---|---|
| GET  /v1/reconstructions/{file}, /v2/… | ``Range`` honoured; 416 at/after EOF (speculative unknown-size windows too); end clamped; each term carries ``verification_hash`` |
| GET/POST /v1/reconstructions | batch form (§7.6): ``?file_id=…`` (xet-core client) or JSON ``[{"hash":…}]`` (spec) |
| GET  /v1/data/{xorb}?e=&s= | signed, expiring URL; single range via sendfile (206), or read from a remote store; multi-range -> multipart/byteranges |
| POST /v1/xorbs/{prefix}/{xorb} | validated in a thread, stored atomically, ``{"was_inserted": bool}`` |
| HEAD /v1/xorbs/{prefix}/{xorb}, /v1/files/{file} | ``Content-Length`` = stored xorb size / file size |
| POST /v1/shards, /v2/shards | validated; v1 ``{"result": 0|1}``, v2 NDJSON events ending in ``{"type":"result"}`` |
| GET  /v1/chunks/{default|default-merkledb}/{chunk} | global dedup: a full shard with footer (§6.3) or 404 |
| POST /v1/xorb-grants/… | always 404 (client falls back to POST /v1/xorbs; a 200 would lose data, §7.2) |
| POST /v1/telemetry | accepted and dropped |

Repo binding (auth.py): a CAS token names one repo, and every route that hands out a file's reconstruction
(v1, v2, batch, ``HEAD /v1/files``) serves only a file reachable from that repo
(``Metadata.file_reachable``: in some commit of the repo, or registered by a shard uploaded with a token of
the repo); any other file is the same 404 as an unknown one, so existence does not leak. A shard upload
records the uploading token's repo. Global dedup stays global on purpose (see ``dedup_shard``). Data URLs
need no binding: they are signed per xorb and only handed out inside a reconstruction the token may see.

Fetch URLs (``url_maker``): with a store that presigns (S3, ``State.direct_url``) and without
``--proxy-reads``, each xorb's URL is a presigned GET of the xorb object on the store (any single Range;
the client talks to the store, the node serves no data bytes); otherwise the node's own ``/v1/data`` URL.
Both live ``DATA_URL_TTL_S`` (1 h), far above how long a reader keeps a plan (``FileReader``'s
``reconstruction_ttl_s``, 300 s), so a cached plan never holds an expired URL; a 403 on an expired one
makes the client ask for a fresh reconstruction.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any

from aiohttp import web

from xetfs.core.hashing import ZERO_HASH, MerkleHash
from xetfs.core.reconstruction import FetchRange, Reconstruction, parse_range_header, plan_reconstruction, \
    to_json_v1, to_json_v2
from xetfs.core.shard import Shard, XorbChunkEntry, XorbInfo, serialize_full_shard
from xetfs.errors import NotFound, ValidationError
from xetfs.server.app import State, state_of
from xetfs.server.auth import DATA_URL_TTL_S, CasClaims
from xetfs.server.metadata.store import FileRecord, XorbRecord
from xetfs.server.services.validation import MAX_SHARD_BODY_BYTES, MAX_XORB_BODY_BYTES, ValidShard, ValidXorb, \
    check_shard, check_xorb

log = logging.getLogger(__name__)

PREFIXES = ("default", "default-merkledb")
DEDUP_KEY_TTL_S = 3600


def xorb_key(xorb: MerkleHash | str) -> str:
    return f"xorbs/{xorb}"


def _hash_param(request: web.Request, name: str) -> MerkleHash:
    return MerkleHash.from_hex(request.match_info[name])


def _prefix(request: web.Request) -> None:
    if request.match_info["prefix"] not in PREFIXES:
        raise NotFound(f"unknown prefix {request.match_info['prefix']!r}")


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise ValidationError(f"body of {request.content_length} bytes exceeds {limit}")
    buf = bytearray()
    while chunk := await request.content.readany():
        buf += chunk
        if len(buf) > limit:
            raise ValidationError(f"body exceeds {limit} bytes")
    return bytes(buf)


# ---------------------------------------------------------------------------------------- reconstruction

def file_record(st: State, file_hash: MerkleHash) -> FileRecord:
    rec = st.meta.file(file_hash)
    if rec is None:
        if file_hash == ZERO_HASH:        # the empty file needs no upload (§5.3)
            return FileRecord(ZERO_HASH, 0, (), None)
        raise NotFound(f"file {file_hash} not found")
    return rec


def token_repo(st: State, claims: CasClaims) -> int | None:
    """The repo a CAS token is bound to -> its row id; None for an anonymous ``--public-read`` caller.
    NotFound when the repo is gone (deleted after the token was issued). Sync (DB)."""
    if claims.sub == "anonymous" and not claims.repo:
        return None
    repo = st.meta.repo_by_key(claims.repo)
    if repo is None:
        raise NotFound(f"repository {claims.repo} not found")
    return repo.id


def readable_file(st: State, claims: CasClaims, file_hash: MerkleHash) -> FileRecord:
    """``file_record`` for a caller holding ``claims``: a file not reachable from the token's repo is the
    same 404 as an unknown file. The empty file reveals nothing and is always served. Sync (DB)."""
    if file_hash != ZERO_HASH and not st.meta.file_reachable(token_repo(st, claims), file_hash):
        raise NotFound(f"file {file_hash} not found")
    return file_record(st, file_hash)


def _xorb(st: State, h: MerkleHash) -> XorbRecord:
    rec = st.meta.xorb(h)
    if rec is None:
        raise NotFound(f"xorb {h} missing from the index")
    return rec


def plan(st: State, rec: FileRecord, byte_range: tuple[int, int] | None, verify: bool = True) -> Reconstruction:
    """§7.3 server plan from the metadata alone (no xorb is read). Runs in a thread."""
    return plan_reconstruction(rec.terms, byte_range, lambda x: _xorb(st, x).chunk_offsets,
                               (lambda x: _xorb(st, x).chunk_hashes) if verify else None,
                               chunk_sizes=lambda x: _xorb(st, x).chunk_sizes)


def url_maker(request: web.Request) -> Any:
    st = state_of(request)
    base = f"{request.scheme}://{request.host}"
    signed: dict[MerkleHash, str] = {}

    def url_for(fr: FetchRange) -> str:
        if fr.xorb_hash not in signed:
            h = str(fr.xorb_hash)
            signed[fr.xorb_hash] = (st.direct_url(xorb_key(h), DATA_URL_TTL_S)
                                    or f"{base}/v1/data/{h}?{st.auth.data_query(h, DATA_URL_TTL_S)}")
        return signed[fr.xorb_hash]
    return url_for


async def _reconstruction(request: web.Request, version: int) -> web.Response:
    st = state_of(request)
    claims = st.auth.cas_claims(request.headers.get("Authorization"), "read")
    fh = _hash_param(request, "file_id")
    rec = await st.run(readable_file, st, claims, fh)
    byte_range = parse_range_header(request.headers.get("Range"), rec.size)
    r = await st.run(plan, st, rec, byte_range)
    st.metrics.inc("xetfs_cas_reconstructions_total")
    to_json = to_json_v2 if version == 2 else to_json_v1
    return web.json_response(to_json(r, url_maker(request)))


async def _reconstruction_v1(request: web.Request) -> web.Response:
    return await _reconstruction(request, 1)


async def _reconstruction_v2(request: web.Request) -> web.Response:
    return await _reconstruction(request, 2)


async def _batch_reconstruction(request: web.Request) -> web.Response:
    """§7.6: ``{"files": {file: [terms]}, "fetch_info": {xorb: [...]}}`` (v1 shapes)."""
    st = state_of(request)
    claims = st.auth.cas_claims(request.headers.get("Authorization"), "read")
    if request.method == "POST":
        body = json.loads(await read_body(request, 1 << 20) or b"[]")
        ids = [item["hash"] if isinstance(item, dict) else str(item) for item in body]
    else:
        ids = request.query.getall("file_id", [])
    url_for = url_maker(request)
    files: dict[str, Any] = {}
    fetch_info: dict[str, list[Any]] = {}
    for file_id in ids:
        rec = await st.run(readable_file, st, claims, MerkleHash.from_hex(file_id))
        obj = to_json_v1(await st.run(plan, st, rec, None), url_for)
        files[file_id] = obj["terms"]
        for xorb, entries in obj["fetch_info"].items():
            have = fetch_info.setdefault(xorb, [])
            have += [e for e in entries if e not in have]
    st.metrics.inc("xetfs_cas_reconstructions_total", len(ids))
    return web.json_response({"files": files, "fetch_info": fetch_info})


# ---------------------------------------------------------------------------------------- data route

def parse_ranges(value: str, total: int) -> list[tuple[int, int]]:
    """``bytes=a-b,c-d`` -> ``[start, end)`` pairs (each by the single-range rules of core)."""
    unit, _, spec = value.partition("=")
    return [r for part in spec.split(",")
            if (r := parse_range_header(f"{unit}={part.strip()}", total)) is not None]


async def _data(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    xorb = str(_hash_param(request, "xorb"))
    st.auth.check_data(xorb, request.query.get("e"), request.query.get("s"))
    key = xorb_key(xorb)
    size = await st.run(st.storage.size, key)
    header = request.headers.get("Range")
    ranges = parse_ranges(header, size) if header else [(0, size)]
    served = sum(e - s for s, e in ranges)
    st.metrics.inc("xetfs_cas_data_bytes_served_total", served)
    path = st.storage.path_for(key)
    if len(ranges) == 1 and path is not None:
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})
    if len(ranges) == 1:
        (s, e), = ranges
        data = await st.run(st.storage.get_range, key, s, e - 1)
        status = 206 if header else 200
        headers = {"Content-Range": f"bytes {s}-{e - 1}/{size}"} if header else {}
        return web.Response(body=data, status=status, headers=headers, content_type="application/octet-stream")
    return await _multipart(request, st, key, ranges, size)


async def _multipart(request: web.Request, st: State, key: str, ranges: list[tuple[int, int]],
                     size: int) -> web.StreamResponse:
    """RFC 7233 multipart/byteranges, parts in request order (§7.3 multi-range fetching)."""
    boundary = secrets.token_hex(16)
    heads = [(f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
              f"Content-Range: bytes {s}-{e - 1}/{size}\r\n\r\n").encode() for s, e in ranges]
    tail = f"--{boundary}--\r\n".encode()
    length = sum(len(h) + (e - s) + 2 for h, (s, e) in zip(heads, ranges)) + len(tail)
    resp = web.StreamResponse(status=206, headers={
        "Content-Type": f"multipart/byteranges; boundary={boundary}", "Content-Length": str(length)})
    await resp.prepare(request)
    for head, (s, e) in zip(heads, ranges):
        await resp.write(head)
        await resp.write(await st.run(st.storage.get_range, key, s, e - 1))
        await resp.write(b"\r\n")
    await resp.write(tail)
    await resp.write_eof()
    return resp


# ---------------------------------------------------------------------------------------- uploads

def _store_xorb(st: State, valid: ValidXorb) -> bool:
    st.storage.put_if_absent(xorb_key(valid.record.hash), valid.data)
    return st.meta.add_xorb(valid.record, valid.dedup_chunks)


async def _post_xorb(request: web.Request) -> web.Response:
    st = state_of(request)
    _prefix(request)
    claims = st.auth.cas_claims(request.headers.get("Authorization"), "write")
    xorb = _hash_param(request, "hash")
    body = await read_body(request, MAX_XORB_BODY_BYTES)
    if await st.run(st.meta.has_xorb, xorb):
        return web.json_response({"was_inserted": False})
    valid = await st.run(check_xorb, body, str(xorb))
    inserted = await st.run(_store_xorb, st, valid)
    if inserted:
        st.metrics.inc("xetfs_cas_xorb_upload_bytes_total", len(body))
        st.metrics.inc("xetfs_cas_xorbs_stored_total")
        await st.run(st.audit.write, claims.sub, claims.repo, "xorb", str(xorb), len(body))
    return web.json_response({"was_inserted": inserted})


def _store_shard(st: State, valid: ValidShard, body: bytes, claims: CasClaims) -> bool:
    uploader = token_repo(st, claims)     # before storing: a token of a deleted repo registers nothing
    st.storage.put_if_absent(f"shards/{valid.hash}", body)
    return st.meta.add_shard(valid.hash, len(body), valid.files, valid.dedup_chunks, uploader)


async def _accept_shard(request: web.Request) -> tuple[ValidShard, bool]:
    st = state_of(request)
    claims = st.auth.cas_claims(request.headers.get("Authorization"), "write")
    body = await read_body(request, MAX_SHARD_BODY_BYTES)
    valid = await st.run(check_shard, body, st.meta.xorb)
    new = await st.run(_store_shard, st, valid, body, claims)
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


# ---------------------------------------------------------------------------------------- dedup, heads, misc

MAX_DEDUP_XORBS = 32


def _xorb_info(rec: XorbRecord) -> XorbInfo:
    """§5.4 block as the server serves it: uncompressed offsets and ``num_bytes_on_disk`` = stored size."""
    entries, start = [], 0
    for h, size in zip(rec.chunk_hashes, rec.chunk_sizes):
        entries.append(XorbChunkEntry(h, start, size))
        start += size
    return XorbInfo(rec.hash, tuple(entries), start, rec.stored_bytes)


def dedup_shard(st: State, chunk: MerkleHash) -> bytes | None:
    """§6.3: a full shard (footer, lookup tables) listing the xorb that holds ``chunk`` and, when ``chunk``
    starts a known file, the other xorbs of that file (so a re-upload learns them all at once); None =
    unknown chunk.

    Deliberately NOT bound to the token's repo: like the Hub, dedup works across repos. The answer carries
    xorb hashes, sizes and chunk hashes keyed with a fresh random key (``--dedup-hmac random``), never data
    or data URLs, and it is only given to a caller who already knows the raw chunk hash (i.e. has the data).
    Reading still needs a reconstruction, which is repo-bound (a shard naming those xorbs must prove the raw
    chunk hashes: validation recomputes the file and verification hashes). With ``--dedup-hmac none`` the
    answer's chunk hashes are plain, which would let a caller register (and so read) those xorbs' chunks:
    use that mode only between trusted clients."""
    xorb, file_hash = st.meta.dedup_entry(chunk)
    if xorb is None:
        return None
    hashes = [xorb]
    rec = st.meta.file(file_hash) if file_hash is not None else None
    for t in rec.terms if rec is not None else ():
        if t.xorb_hash not in hashes and len(hashes) < MAX_DEDUP_XORBS:
            hashes.append(t.xorb_hash)
    infos = tuple(_xorb_info(_xorb(st, h)) for h in hashes)
    now = int(time.time())
    key = secrets.token_bytes(32) if st.dedup_keyed else bytes(32)
    return serialize_full_shard(Shard((), infos), hmac_key=key, creation_timestamp=now,
                                key_expiry=now + DEDUP_KEY_TTL_S)


async def _chunks(request: web.Request) -> web.Response:
    st = state_of(request)
    _prefix(request)
    st.auth.cas_claims(request.headers.get("Authorization"), "read")
    chunk = _hash_param(request, "hash")
    st.metrics.inc("xetfs_cas_dedup_queries_total")
    data = await st.run(dedup_shard, st, chunk)
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
    rec = await st.run(st.meta.xorb, _hash_param(request, "hash"))
    if rec is None:
        raise NotFound("xorb not stored")
    return web.Response(headers={"Content-Length": str(rec.stored_bytes)})


async def _head_file(request: web.Request) -> web.Response:
    st = state_of(request)
    claims = st.auth.cas_claims(request.headers.get("Authorization"), "read")
    rec = await st.run(readable_file, st, claims, _hash_param(request, "file_id"))
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
    r.add_get("/v1/data/{xorb}", _data)
    r.add_post("/v1/xorbs/{prefix}/{hash}", _post_xorb)
    r.add_head("/v1/xorbs/{prefix}/{hash}", _head_xorb)
    r.add_head("/v1/files/{file_id}", _head_file)
    r.add_post("/v1/shards", _post_shard_v1)
    r.add_post("/v2/shards", _post_shard_v2)
    r.add_get("/v1/chunks/{prefix}/{hash}", _chunks)
    r.add_post("/v1/xorb-grants/{prefix}/{hash}", _xorb_grant)
    r.add_post("/v1/telemetry", _telemetry)
