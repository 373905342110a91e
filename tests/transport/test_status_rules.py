"""Status-code rules (docs/protocol.md, "Status codes") at the HTTP level, against a scripted loopback HTTP server.

The real ``xetfs serve`` implements every v2 route and never answers 503, so the fallback and retry paths
are driven by a tiny raw-socket HTTP/1.1 server that answers from a script and records each request.
"""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio

from xetfs.transport import http
from xetfs.client.cas import CasClient, TokenProvider
from xetfs.transport.retry import RetryPolicy
from xetfs.core.hashing import MerkleHash
from xetfs import errors
from xetfs.errors import NotFound, RemoteError

FILE = MerkleHash(bytes(range(32)))
XORB = MerkleHash(bytes(range(1, 33)))
RECON_V1 = {"offset_into_first_range": 0, "terms": [{"hash": str(XORB), "unpacked_length": 10,
                                                     "range": {"start": 0, "end": 1}}],
            "fetch_info": {str(XORB): [{"range": {"start": 0, "end": 1}, "url": "http://x/d",
                                        "url_range": {"start": 0, "end": 17}}]}}
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05, max_total_s=10.0)

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Script:
    routes: dict[tuple[str, str], list[Answer]]
    log: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def answer(self, method: str, path: str) -> Answer:
        queue = self.routes.get((method, path))
        if not queue:
            return 404, {}, b'{"error": "no route"}'
        return queue.pop(0) if len(queue) > 1 else queue[0]


async def _handle(stream: trio.SocketStream, script: Script) -> None:
    buf = b""
    async with stream:
        while True:
            while b"\r\n\r\n" not in buf:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            length = int(headers.get("content-length", 0))
            while len(buf) < length:
                buf += await stream.receive_some(65536)
            buf = buf[length:]
            script.log.append((method, path, headers))
            status, extra, body = script.answer(method, path)
            hdrs = "".join(f"{k}: {v}\r\n" for k, v in {"Content-Length": str(len(body)), **extra}.items())
            await stream.send_all(f"HTTP/1.1 {status} X\r\n{hdrs}\r\n".encode() + body)


@asynccontextmanager
async def scripted(routes: dict[tuple[str, str], list[Answer]]) -> AsyncIterator[tuple[Script, CasClient]]:
    script = Script(routes)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, lambda s: _handle(s, script), 0)
        script.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        async with http.make_http_client() as client:
            yield script, CasClient(TokenProvider.static(script.url, "tok"), client, retry=FAST)
        nursery.cancel_scope.cancel()


def _ok(obj: object) -> Answer:
    return 200, {"Content-Type": "application/json"}, json.dumps(obj).encode()


def test_reconstruction_falls_back_to_v1_and_remembers() -> None:
    async def main() -> None:
        routes = {("GET", f"/v2/reconstructions/{FILE}"): [(501, {}, b"")],
                  ("GET", f"/v1/reconstructions/{FILE}"): [_ok(RECON_V1)]}
        async with scripted(routes) as (script, cas):
            r = await cas.reconstruction(FILE, (0, 10))
            assert r.terms[0].xorb_hash == XORB and r.fetch[XORB][0].byte_end == 17
            await cas.reconstruction(FILE)
            paths = [p for _, p, _ in script.log]
            assert paths == [f"/v2/reconstructions/{FILE}", f"/v1/reconstructions/{FILE}",
                             f"/v1/reconstructions/{FILE}"]
            assert script.log[0][2]["range"] == "bytes=0-9" and "range" not in script.log[2][2]
            assert script.log[0][2]["authorization"] == "Bearer tok"

    trio.run(main)


def test_missing_file_is_not_found_and_v2_is_kept() -> None:
    async def main() -> None:
        async with scripted({}) as (script, cas):
            with pytest.raises(NotFound):
                await cas.reconstruction(FILE)
            with pytest.raises(NotFound):
                await cas.reconstruction(FILE)
            assert [p.split("/")[1] for _, p, _ in script.log] == ["v2", "v1", "v2", "v1"]

    trio.run(main)


def test_shard_upload_falls_back_to_v1() -> None:
    async def main() -> None:
        async with scripted({("POST", "/v1/shards"): [_ok({"result": 1})]}) as (script, cas):
            assert await cas.upload_shard(b"shard") is True
            assert await cas.upload_shard(b"shard") is True
            assert [p for _, p, _ in script.log] == ["/v2/shards", "/v1/shards", "/v1/shards"]

    trio.run(main)


def test_503_with_retry_after_is_retried_then_succeeds() -> None:
    async def main() -> None:
        routes = {("POST", f"/v1/xorbs/default/{XORB}"): [(503, {"Retry-After": "0"}, b"busy"),
                                                          (500, {}, b"oops"), _ok({"was_inserted": True})]}
        async with scripted(routes) as (script, cas):
            from xetfs.core.xorb import BuiltXorb
            xorb = BuiltXorb(XORB, b"records", (), (), (0, 7))
            assert await cas.upload_xorb(xorb) is True
            assert len(script.log) == 3 and script.log[0][2]["content-length"] == "7"

    trio.run(main)


@pytest.mark.parametrize(("status", "error"), [(400, errors.ValidationError), (403, errors.Forbidden),
                                               (501, errors.RemoteError)])
def test_final_statuses_are_sent_once(status: int, error: type[errors.XetError]) -> None:
    async def main() -> None:
        async with scripted({("POST", "/v1/shards"): [(status, {}, b"no")]}) as (script, cas):
            cas._shard_version = 1
            with pytest.raises(error) as info:
                await cas.upload_shard(b"s")
            assert http.http_status_of(info.value) == status
            assert len(script.log) == 1

    trio.run(main)


def test_dedup_query_errors_mean_no_dedup_and_are_not_retried() -> None:
    async def main() -> None:
        chunk = MerkleHash(bytes(32))
        routes = {("GET", f"/v1/chunks/default/{chunk}"): [(500, {}, b"down")]}
        async with scripted(routes) as (script, cas):
            assert await cas.query_dedup(chunk) is None
            assert len(script.log) == 1
            routes[("GET", f"/v1/chunks/default/{chunk}")] = [_ok({"not": "a shard"})]
            assert await cas.query_dedup(chunk) is None

    trio.run(main)


def test_data_urls_get_no_authorization_and_a_wrong_content_range_is_refused() -> None:
    from xetfs.core.reconstruction import FetchRange

    async def main() -> None:
        routes = {("GET", "/d?sig=1"): [(206, {"Content-Range": "bytes 5-9/100"}, b"abcde")],
                  ("GET", "/d?sig=2"): [(206, {"Content-Range": "bytes 0-4/100"}, b"abcde")]}
        async with scripted(routes) as (script, cas):
            got = await cas.fetch_range(FetchRange(XORB, 0, 1, 5, 9, f"{script.url}/d?sig=1"))
            assert bytes(got) == b"abcde"
            assert "authorization" not in script.log[0][2] and script.log[0][2]["range"] == "bytes=5-9"
            with pytest.raises(RemoteError, match="Content-Range"):
                await cas.fetch_range(FetchRange(XORB, 0, 1, 5, 9, f"{script.url}/d?sig=2"))

    trio.run(main)
