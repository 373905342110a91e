"""The HTTP session shared by the Hub and CAS clients: one AsyncClient, one error translation.

httpx exceptions and HTTP statuses become ``xetfs.errors`` here and nowhere else in the client: statuses by
the table in ``xetfs.protocol.status`` (``status_error`` below passes it the wall clock), httpx's own failures
by ``transport_error``. A transport failure has ``http_status`` 0; a request that never left (connect
failure) has ``request_sent`` False. Messages are one line: ``GET /path: 404 Not Found (RepoNotFound): detail``.

Speed (docs/architecture.md, "Performance"): httpx reads sockets 64 KiB at a time by default, which caps
loopback bodies near 0.6-0.8 GB/s. ``make_http_client`` installs a network backend whose streams read up to
``read_size_bytes`` (1 MiB) per call, and ``read_body_into`` copies a body into one preallocated buffer.
Every wait is bounded: ``httpx.Timeout`` with connect/read/write/pool limits.
"""
from __future__ import annotations

import logging
import time
import typing
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import trio

from xetfs import errors
from xetfs.errors import XetError
from xetfs.protocol.status import detail_of, request_label
from xetfs.protocol.status import status_error as _status_error
from xetfs.transport.params import DEFAULT_HTTP, HttpParams
from xetfs.transport.rangeget import RangeGetter

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- client factory

class _LargeReadStream(httpcore.AsyncNetworkStream):
    """Asks the socket for ``read_size`` bytes whatever h11 asked for (h11 buffers the surplus)."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, read_size: int) -> None:
        self._inner, self._read_size = inner, read_size

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max(max_bytes, self._read_size), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        return _LargeReadStream(await self._inner.start_tls(ssl_context, server_hostname, timeout),
                                self._read_size)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _LargeReadBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, read_size: int) -> None:
        self._inner: httpcore.AsyncNetworkBackend = _AutoBackend()
        self._read_size = read_size

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: typing.Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                               socket_options=socket_options)
        return _LargeReadStream(stream, self._read_size)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: typing.Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)
        return _LargeReadStream(stream, self._read_size)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _AutoBackend(httpcore.AsyncNetworkBackend):
    """trio's backend under trio, anyio's otherwise (asyncio), chosen at first use like httpcore's own."""

    def __init__(self) -> None:
        self._backend: httpcore.AsyncNetworkBackend | None = None

    def _get(self) -> httpcore.AsyncNetworkBackend:
        if self._backend is None:
            try:
                trio.lowlevel.current_task()
                trio_running = True
            except RuntimeError:
                trio_running = False
            self._backend = httpcore.TrioBackend() if trio_running else httpcore.AnyIOBackend()
        return self._backend

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: typing.Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        return await self._get().connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                             socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: typing.Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        return await self._get().connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._get().sleep(seconds)


class XetHttpClient(httpx.AsyncClient):
    """An AsyncClient that also owns a ``RangeGetter`` (raw-socket range GETs for data URLs), closed with it."""

    def __init__(self, *, params: HttpParams, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.range_getter = RangeGetter(params)

    async def aclose(self) -> None:
        await self.range_getter.aclose()
        await super().aclose()


def make_http_client(params: HttpParams = DEFAULT_HTTP) -> XetHttpClient:
    """One AsyncClient per process/session: pooled connections, bounded waits, 1 MiB socket reads, and a
    ``range_getter`` for data URLs (``xetfs.transport.rangeget``)."""
    limits = httpx.Limits(max_connections=params.max_connections,
                          max_keepalive_connections=params.max_keepalive_connections)
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    if params.read_size_bytes > 64 * 1024 and isinstance(getattr(transport, "_pool", None),
                                                         httpcore.AsyncConnectionPool):
        # httpx builds its pool without a network_backend argument; rebuild it with ours (same limits).
        transport._pool = httpcore.AsyncConnectionPool(
            max_connections=limits.max_connections, max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, ssl_context=httpx.create_ssl_context(),
            network_backend=_LargeReadBackend(params.read_size_bytes))
    return XetHttpClient(params=params, transport=transport, timeout=params.timeout(), trust_env=False,
                             follow_redirects=False, headers={"User-Agent": params.user_agent})


# ------------------------------------------------------------------------------------------ error mapping

def status_error(status: int, *, method: str, url: str, headers: Mapping[str, str] | None = None,
                 body: bytes = b"", reason: str = "") -> XetError | None:
    """``xetfs.protocol.status.status_error`` with the wall clock (for ``Retry-After: <HTTP-date>``)."""
    return _status_error(status, method=method, url=url, now_unix_s=time.time(), headers=headers,
                               body=body, reason=reason)


def transport_error(exc: httpx.HTTPError, *, method: str, url: str) -> XetError:
    """httpx's own exceptions (no HTTP answer) -> xetfs errors."""
    what = request_label(method, url)
    out: XetError
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        out = errors.ValidationError(f"{what}: bad URL: {exc}")
    elif isinstance(exc, httpx.TimeoutException):
        out = errors.TransientError(f"{what}: timed out ({type(exc).__name__})")
    elif isinstance(exc, httpx.TransportError):
        host = urlsplit(url).netloc
        out = errors.TransientError(f"{what}: cannot reach {host}: {exc or type(exc).__name__}")
    else:
        out = errors.RemoteError(f"{what}: {type(exc).__name__}: {exc}")
    out.http_status = 0
    # never reached a server: another node may take it (xetfs.transport.endpoints)
    out.request_sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    return out


def http_status_of(exc: BaseException) -> int | None:
    """The HTTP status an error came with (0: no answer), or None when it did not come over HTTP."""
    return exc.http_status if isinstance(exc, XetError) else None


@contextmanager
def translated(method: str, url: str) -> typing.Iterator[None]:
    try:
        yield
    except httpx.HTTPError as exc:
        raise transport_error(exc, method=method, url=url) from exc


# ----------------------------------------------------------------------------------------------- requests

Form = Mapping[str, str | list[str]]


async def send(client: httpx.AsyncClient, method: str, url: str, *, headers: Mapping[str, str] | None = None,
               params: Mapping[str, str] | None = None, content: bytes | None = None, json: object = None,
               data: Form | None = None) -> httpx.Response:
    """One request, body read; raises the mapped error for >= 400 answers and transport failures."""
    with translated(method, url):
        resp = await client.request(method, url, headers=headers, params=params, content=content, json=json,
                                    data=data)
    err = status_error(resp.status_code, method=method, url=url, headers=resp.headers,
                       body=resp.content, reason=resp.reason_phrase)
    if err is not None:
        raise err
    return resp


@asynccontextmanager
async def stream(client: httpx.AsyncClient, method: str, url: str, *,
                 headers: Mapping[str, str] | None = None) -> AsyncIterator[httpx.Response]:
    """A streamed request: yields the response with its body unread (read it under ``translated``)."""
    with translated(method, url):
        async with client.stream(method, url, headers=headers) as resp:
            if resp.status_code >= 400:
                body = await resp.aread()
                err = status_error(resp.status_code, method=method, url=url, headers=resp.headers,
                                   body=body, reason=resp.reason_phrase)
                assert err is not None
                raise err
            yield resp


async def read_body_into(resp: httpx.Response, out: memoryview | bytearray, *, method: str, url: str) -> int:
    """Copy a streamed body into ``out``; returns the byte count. More bytes than ``out`` holds -> error."""
    view = memoryview(out)
    pos = 0
    with translated(method, url):
        async for piece in resp.aiter_raw():
            end = pos + len(piece)
            if end > len(view):
                raise errors.RemoteError(f"{request_label(method, url)}: body longer than the {len(view)} bytes expected")
            view[pos:end] = piece
            pos = end
    return pos


def json_body(resp: httpx.Response, what: str) -> object:
    try:
        return resp.json()
    except ValueError:
        raise errors.RemoteError(f"{what}: answer is not JSON: {detail_of(resp.content)!r}") from None
