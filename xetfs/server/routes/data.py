"""``GET /v1/data/{xorb}?e=&r=&s=``: the node's own signed, expiring xorb URLs (docs/protocol.md, CAS API).

A URL is signed for byte ranges ``r`` (``services.cas.fetch_urls``) and serves nothing else: a request
without ``Range``, or with a range outside the signed ones, overlapping ranges or more than
``MAX_SIGNED_RANGES`` of them, is 403 (``services.cas.check_requested_ranges``). A single range is served with ``sendfile`` from a local store (206), or read from a remote store; several
ranges are answered as ``multipart/byteranges``, parts in request order. The URL itself is the credential
(``auth.Auth.check_data``): hf_xet sends no Authorization header there.
"""
from __future__ import annotations

import secrets

from aiohttp import web

from xetfs.core.reconstruction import parse_range_header
from xetfs.errors import Forbidden
from xetfs.server.auth import MAX_SIGNED_RANGES
from xetfs.server.context import State, state_of
from xetfs.server.request import hash_param, range_header
from xetfs.server.services.cas import check_requested_ranges, xorb_key


def parse_ranges(value: str, total: int) -> list[tuple[int, int]]:
    """``bytes=a-b,c-d`` -> ``[start, end)`` pairs (each by the single-range rules of core)."""
    unit, _, spec = value.partition("=")
    return [r for part in spec.split(",")
            if (r := parse_range_header(f"{unit}={part.strip()}", total)) is not None]


async def _data(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    xorb = str(hash_param(request, "xorb"))
    q = request.query
    signed = st.auth.check_data(xorb, q.get("e"), q.get("r"), q.get("s"))
    header = range_header(request)
    if not header:
        raise Forbidden("a data URL serves only the byte ranges it is signed for: send a Range header")
    if header.count(",") >= MAX_SIGNED_RANGES:
        raise Forbidden(f"at most {MAX_SIGNED_RANGES} ranges per request")
    key = xorb_key(xorb)
    size = await st.run(st.storage.size, key)
    ranges = parse_ranges(header, size)
    check_requested_ranges(ranges, signed)
    served = sum(e - s for s, e in ranges)
    st.metrics.inc("xetfs_cas_data_bytes_served_total", served)
    path = st.storage.path_for(key)
    if len(ranges) == 1 and path is not None:
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})
    if len(ranges) == 1:
        (s, e), = ranges
        data = await st.run(st.storage.get_range, key, s, e - 1)
        return web.Response(body=data, status=206, headers={"Content-Range": f"bytes {s}-{e - 1}/{size}"},
                            content_type="application/octet-stream")
    return await _multipart(request, st, key, ranges, size)


async def _multipart(request: web.Request, st: State, key: str, ranges: list[tuple[int, int]],
                     size: int) -> web.StreamResponse:
    """RFC 7233 multipart/byteranges, parts in request order."""
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


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/data/{xorb}", _data)
