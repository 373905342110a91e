"""Xet CAS API client (docs/protocol.md, "CAS API"): reconstruction, data fetch, xorb and shard upload, dedup.

Authentication: CAS calls carry ``Authorization: Bearer <xet token>``; the token comes from the Hub's
``xet-{read|write}-token`` route and is refreshed proactively ``refresh_margin_s`` (30 s) before its ``exp``.
A 401 refreshes it once and repeats the call; a second 401 is final. Data URLs from a reconstruction are
signed: they get no Authorization header, and a 403 from one raises ``FetchUrlExpired`` so the caller
re-queries the reconstruction for fresh URLs.

Several nodes (``xetfs.transport.endpoints``): when the CAS node of the token fails (connection error, timeout, 5xx) the
next attempt fetches a new token, which a live Hub node answers with its own ``casUrl``; a data URL on a dead
node also raises ``FetchUrlExpired`` (a new reconstruction, from a live node, gives live URLs).

Version fallback: ``/v2/reconstructions`` and ``/v2/shards`` answering 404 or 501 are retried once
on the v1 route; once v1 has worked the choice is remembered for this client (a missing file also 404s
on v2, so v1 is only remembered when it succeeds). Global dedup queries are best effort: any error
or a 404 means "no dedup" and they are never retried.

Every request attempt's outcome goes to ``Failover.observe`` (a mount's reachability, ``xetfs.transport.reachability``).

Byte ranges of files are ``[start, end)``; ``FetchRange.byte_end`` is inclusive like the wire.
Retries follow ``xetfs.transport.retry`` (transient errors only); statuses map to errors in ``xetfs.transport.http``.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TypeVar

import httpx
import trio

from xetfs.protocol.cas import (check_content_range, parse_shard_events, parse_shard_upload_answer_v1,
                                parse_xorb_upload_answer, range_header)
from xetfs.protocol.reconstruction import parse_reconstruction_json
from xetfs.protocol.status import V1_FALLBACK_STATUSES
from xetfs.transport import http
from xetfs.transport.rangeget import RangeBody, RangeGetter, RangeUnsupported
from xetfs.transport.retry import DEFAULT_RETRY, RetryPolicy, retry_call
from xetfs.core.hashing import MerkleHash
from xetfs.core.reconstruction import FetchRange, Reconstruction
from xetfs.core.shard import Shard, parse_shard
from xetfs.core.xorb import BuiltXorb
from xetfs.transport.endpoints import failover_for
from xetfs.errors import Forbidden, RemoteError, TransientError, Unauthorized, XetError
from xetfs.protocol.hub import XetToken

log = logging.getLogger(__name__)

T = TypeVar("T")
FAR_FUTURE_EXP = 4102444800.0   # 2100-01-01, for tokens that never expire (tests, static tokens)


class FetchUrlExpired(Forbidden):
    """A data URL answered 403: its signature expired or was refused; query the reconstruction again."""


class TokenProvider:
    """The current xet token, fetched again ``refresh_margin_s`` before it expires (single-flight)."""

    def __init__(self, fetch: Callable[[], Awaitable[XetToken]], *, refresh_margin_s: float = 30.0,
                 now: Callable[[], float] = time.time) -> None:
        self._fetch, self._margin, self._now = fetch, refresh_margin_s, now
        self._token: XetToken | None = None
        self._lock = trio.Lock()
        self.refreshes = 0

    @classmethod
    def static(cls, cas_url: str, access_token: str, exp: float = FAR_FUTURE_EXP) -> "TokenProvider":
        token = XetToken(cas_url.rstrip("/"), access_token, exp)

        async def fetch() -> XetToken:
            return token

        return cls(fetch)

    def _fresh(self, token: XetToken | None) -> bool:
        return token is not None and self._now() < token.exp - self._margin

    async def get(self) -> XetToken:
        if self._fresh(self._token):
            assert self._token is not None
            return self._token
        return await self.refresh(self._token)

    async def refresh(self, stale: XetToken | None) -> XetToken:
        """Fetch a new token unless another task already replaced ``stale`` meanwhile."""
        async with self._lock:   # a token lock, not a per-file one: every caller needs the same answer
            if self._token is not None and self._token is not stale and self._fresh(self._token):
                return self._token
            self._token = await self._fetch()
            self.refreshes += 1
            log.debug("xet token refreshed; expires at %s", self._token.exp)
            return self._token


class CasClient:
    """One CAS (the ``casUrl`` of the token) over a shared ``httpx.AsyncClient``."""

    def __init__(self, tokens: TokenProvider, client: httpx.AsyncClient, *, retry: RetryPolicy = DEFAULT_RETRY,
                 prefix: str = "default") -> None:
        self.tokens = tokens
        self.http = client
        self.retry = retry
        self.prefix = prefix
        self.session_id = str(uuid.uuid4())
        self.failover = failover_for(client)     # shared with the HubClient on the same pool
        self._reconstruction_version = 2
        self._shard_version = 2

    async def _call(self, method: str, path: str, parse: Callable[[httpx.Response], T], *,
                    policy: RetryPolicy | None = None, headers: dict[str, str] | None = None,
                    content: bytes | None = None) -> T:
        """An authenticated CAS call with retries; a 401 refreshes the token once."""
        refreshed = False
        while True:
            used = [await self.tokens.get()]

            async def attempt() -> T:
                token = used[-1]
                if self.failover.should_switch(token.cas_url):   # its node died: a live Hub node's casUrl
                    token = await self.tokens.refresh(token)
                    used.append(token)
                url = token.cas_url + path
                hdrs = {"Authorization": f"Bearer {token.access_token}", "X-Xet-Session-Id": self.session_id,
                        **(headers or {})}
                try:
                    result = parse(await http.send(self.http, method, url, headers=hdrs, content=content))
                except XetError as exc:
                    self.failover.observe(exc)
                    self.failover.node_failed(token.cas_url, exc)
                    raise
                self.failover.observe(None)
                return result

            try:
                return await retry_call(attempt, policy or self.retry, what=f"{method} {path}",
                                        on_retry=self.failover.retried)
            except Unauthorized:
                if refreshed:
                    raise
                refreshed = True
                await self.tokens.refresh(used[-1])

    # -- download
    async def reconstruction(self, file_hash: MerkleHash,
                             byte_range: tuple[int, int] | None = None) -> Reconstruction:
        """Terms + fetch ranges for the file bytes ``[start, end)`` (all when None); 416 past EOF."""
        headers = {} if byte_range is None else range_header(*byte_range)

        def parse(resp: httpx.Response) -> Reconstruction:
            obj = http.json_body(resp, "reconstruction")
            if not isinstance(obj, dict):
                raise RemoteError("reconstruction answer is not an object")
            return parse_reconstruction_json(obj)

        if self._reconstruction_version == 2:
            try:
                return await self._call("GET", f"/v2/reconstructions/{file_hash}", parse, headers=headers)
            except XetError as exc:
                if http.http_status_of(exc) not in V1_FALLBACK_STATUSES:
                    raise
                log.debug("v2 reconstruction answered %s; trying v1", http.http_status_of(exc))
        result = await self._call("GET", f"/v1/reconstructions/{file_hash}", parse, headers=headers)
        self._reconstruction_version = 1
        return result

    async def fetch_range(self, fr: FetchRange) -> bytearray:
        """The serialized bytes ``[byte_start, byte_end]`` of one fetch range, in one preallocated buffer."""
        buf = bytearray(fr.size_bytes)
        await self.fetch_range_into(fr, buf)
        return buf

    async def fetch_range_into(self, fr: FetchRange, out: bytearray | memoryview) -> int:
        """Like ``fetch_range`` into a caller's buffer of at least ``fr.size_bytes``; returns the byte count."""
        if not fr.url:
            raise RemoteError(f"fetch range of xorb {fr.xorb_hash} has no URL")
        view = memoryview(out)[:fr.size_bytes]

        async def attempt() -> int:
            try:
                n = await self._fetch_once(fr, view)
            except XetError as exc:
                self.failover.observe(exc)
                if self.failover.node_failed(fr.url, exc):   # a proxied data URL on a dead node
                    raise FetchUrlExpired(f"{exc} (its node is down: query the reconstruction again)") from exc
                raise
            self.failover.observe(None)
            return n

        try:
            return await retry_call(attempt, self.retry, what=f"fetch {fr.xorb_hash} bytes {fr.byte_start}-{fr.byte_end}",
                                    on_retry=self.failover.retried)
        except Forbidden as exc:
            raise FetchUrlExpired(str(exc)) from exc

    @asynccontextmanager
    async def open_range(self, fr: FetchRange) -> AsyncIterator[RangeBody | None]:
        """One GET of the whole fetch range, its body to receive piece by piece (``RangeBody.recv_into``);
        None when that fast path does not apply (no raw-socket getter, an https URL) or its GET failed: the
        caller then fetches piece by piece with ``fetch_range_into`` (retries, failover, expired URLs)."""
        getter = self._raw_getter(fr.url)
        async with AsyncExitStack() as stack:
            body: RangeBody | None = None
            if getter is not None:
                try:
                    body = await stack.enter_async_context(getter.open_range(
                        fr.url, fr.byte_start, fr.byte_end, {"X-Xet-Session-Id": self.session_id}))
                    check_content_range(body.headers.get("content-range"), fr.byte_start, fr.byte_end, _what(fr))
                    self.failover.observe(None)
                except (XetError, RangeUnsupported) as exc:
                    log.debug("one GET of %s failed (%s): fetching it piece by piece", _what(fr), exc)
                    body = None
            yield body

    def _raw_getter(self, url: str) -> RangeGetter | None:
        """The raw-socket range getter (``transport.rangeget``) for a plain-HTTP data URL, when this client
        has one; None otherwise (httpx serves the GET)."""
        if isinstance(self.http, http.XetHttpClient) and url.startswith("http://"):
            return self.http.range_getter
        return None

    async def _fetch_once(self, fr: FetchRange, view: memoryview) -> int:
        getter = self._raw_getter(fr.url)
        if getter is not None:
            try:   # the fast path: the body lands in ``view`` with one kernel copy (xetfs.transport.rangeget)
                headers, n = await getter.get_into(fr.url, fr.byte_start, fr.byte_end, view,
                                                   {"X-Xet-Session-Id": self.session_id})
            except RangeUnsupported as exc:
                log.debug("data URL answer not handled by the range getter (%s); using httpx", exc)
            else:
                check_content_range(headers.get("content-range"), fr.byte_start, fr.byte_end, _what(fr))
                return n
        headers = {"Range": f"bytes={fr.byte_start}-{fr.byte_end}", "Accept-Encoding": "identity",
                   "X-Xet-Session-Id": self.session_id}
        async with http.stream(self.http, "GET", fr.url, headers=headers) as resp:
            if resp.status_code == 206:
                check_content_range(resp.headers.get("content-range"), fr.byte_start, fr.byte_end, _what(fr))
            elif resp.status_code == 200 and int(resp.headers.get("content-length", -1)) > fr.size_bytes:
                # A server that ignored Range and sent the whole xorb: slice it ourselves.
                with http.translated("GET", fr.url):
                    body = await resp.aread()
                if len(body) <= fr.byte_end:
                    raise RemoteError(f"xorb {fr.xorb_hash}: {len(body)} bytes, range ends at {fr.byte_end}")
                view[:] = memoryview(body)[fr.byte_start:fr.byte_end + 1]
                return len(view)
            n = await http.read_body_into(resp, view, method="GET", url=fr.url)
        if n != len(view):
            raise TransientError(f"fetch {fr.xorb_hash}: got {n} of {len(view)} bytes")
        return n

    # -- upload
    async def upload_xorb(self, xorb: BuiltXorb) -> bool:
        """``POST /v1/xorbs/{prefix}/{hash}``; True when the server stored it, False when it already had it."""
        return await self._call("POST", f"/v1/xorbs/{self.prefix}/{xorb.hash}",
                                lambda resp: parse_xorb_upload_answer(http.json_body(resp, "xorb upload")),
                                content=xorb.data)

    async def upload_shard(self, data: bytes) -> bool:
        """Register an upload shard; True when new, False when the server already had it."""
        if self._shard_version == 2:
            try:
                return await self._call("POST", "/v2/shards", lambda resp: parse_shard_events(resp.content),
                                        content=data)
            except XetError as exc:
                if http.http_status_of(exc) not in V1_FALLBACK_STATUSES:
                    raise
                self._shard_version = 1

        return await self._call("POST", "/v1/shards",
                                lambda resp: parse_shard_upload_answer_v1(http.json_body(resp, "shard upload")),
                                content=data)

    async def query_dedup(self, chunk_hash: MerkleHash) -> Shard | None:
        """Global dedup: the shard that knows this chunk, or None (404 or any error)."""
        try:
            return await self._call("GET", f"/v1/chunks/{self.prefix}/{chunk_hash}",
                                    lambda resp: parse_shard(resp.content), policy=RetryPolicy.none())
        except XetError as exc:
            if http.http_status_of(exc) != 404:
                log.info("dedup query for %s failed, ignored: %s", chunk_hash, exc)
            return None


def _what(fr: FetchRange) -> str:
    return f"fetch of xorb {fr.xorb_hash}"
