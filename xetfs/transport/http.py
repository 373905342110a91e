"""The HTTP layer shared by the Hub and CAS clients: one AsyncClient, one error translation.

Design.md §2 convention 5: httpx exceptions and HTTP statuses become ``xetfs.errors`` here and nowhere
else. The status rules follow xet-protocol.md §7.2 and hub-api.md §7:

    400 -> ValidationError (FormatError / IntegrityError when the server names them)
    401 -> Unauthorized        403 -> Forbidden          404 -> NotFound (X-Error-Code kept in the message)
    409 -> AlreadyExists       412 -> Conflict           416 -> RangeNotSatisfiable
    408, 429, 5xx except 501, connection errors, timeouts -> TransientError (retryable; Retry-After kept)
    501 and any other status -> RemoteError (final; 501 is the v2 -> v1 fallback signal of §7.3/§7.5)

Every mapped error carries ``http_status`` (the real status, 0 for transport errors) and, when the server
sent one, ``retry_after_s``; a request that never left (connect failure) has ``request_sent`` False.
Messages are one line: ``GET /path: 404 Not Found (RepoNotFound): detail``.

Speed (design.md §4): httpx reads sockets 64 KiB at a time by default, which caps loopback bodies near
0.6-0.8 GB/s. ``make_http_client`` installs a network backend whose streams read up to ``read_size_bytes``
(1 MiB) per call, and ``read_body_into`` copies a body into one preallocated buffer.
Every wait is bounded: ``httpx.Timeout`` with connect/read/write/pool limits.
"""
from __future__ import annotations

import json
import logging
import time
import typing
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import trio

from xetfs import errors
from xetfs.transport.retry import parse_retry_after
from xetfs.errors import XetError

log = logging.getLogger(__name__)

_MAX_DETAIL_CHARS = 300
_FINAL_BY_STATUS: dict[int, type[XetError]] = {
    400: errors.ValidationError, 401: errors.Unauthorized, 403: errors.Forbidden, 404: errors.NotFound,
    409: errors.AlreadyExists, 412: errors.Conflict, 416: errors.RangeNotSatisfiable,
}
# A 400 may name a more precise class (X-Error-Code header or an "error_type"/"code" JSON field).
_NAMED_400: dict[str, type[XetError]] = {
    "FormatError": errors.FormatError, "IntegrityError": errors.IntegrityError,
    "ValidationError": errors.ValidationError,
}


@dataclass(frozen=True, slots=True)
class HttpParams:
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    write_timeout_s: float = 60.0
    pool_timeout_s: float = 60.0
    max_connections: int = 32
    max_keepalive_connections: int = 16
    read_size_bytes: int = 1 << 20
    user_agent: str = "xetfs/0.1"

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect_timeout_s, read=self.read_timeout_s,
                             write=self.write_timeout_s, pool=self.pool_timeout_s)


DEFAULT_HTTP = HttpParams()


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
        from xetfs.transport.rangeget import RangeGetter   # rangeget imports this module

        super().__init__(**kwargs)
        self.range_getter = RangeGetter(params)

    async def aclose(self) -> None:
        await self.range_getter.aclose()
        await super().aclose()


def make_http_client(params: HttpParams = DEFAULT_HTTP) -> httpx.AsyncClient:
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

def _detail(body: bytes) -> str:
    text = body[:4096].decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        for key in ("error", "message", "detail"):
            if isinstance(obj.get(key), str):
                text = obj[key]
                break
    text = " ".join(text.split())
    return text[:_MAX_DETAIL_CHARS] + ("..." if len(text) > _MAX_DETAIL_CHARS else "")


def _named_code(headers: Mapping[str, str], body: bytes) -> str | None:
    code = headers.get("x-error-code")
    if code:
        return code
    try:
        obj = json.loads(body[:4096])
    except ValueError:
        return None
    if isinstance(obj, dict):
        for key in ("error_type", "code"):
            if isinstance(obj.get(key), str):
                return str(obj[key])
    return None


def _what(method: str, url: str) -> str:
    return f"{method} {urlsplit(url).path}"


def status_error(status: int, *, method: str, url: str, headers: Mapping[str, str] | None = None,
                 body: bytes = b"", reason: str = "") -> XetError | None:
    """The xetfs error for an HTTP answer, or None for 1xx-3xx."""
    if status < 400:
        return None
    headers = headers if headers is not None else {}
    code = _named_code(headers, body)
    cls: type[XetError]
    if status == 400 and code in _NAMED_400:
        cls = _NAMED_400[code]
    elif status in _FINAL_BY_STATUS:
        cls = _FINAL_BY_STATUS[status]
    elif status in (408, 429) or (status >= 500 and status != 501):
        cls = errors.TransientError
    else:
        cls = errors.RemoteError
    label = f"{status} {reason}".strip() + (f" ({code})" if code else "")
    detail = _detail(body)
    exc = cls(f"{_what(method, url)}: {label}" + (f": {detail}" if detail else ""))
    setattr(exc, "http_status", status)
    retry_after = parse_retry_after(headers.get("retry-after"), time.time())
    if retry_after is not None:
        setattr(exc, "retry_after_s", retry_after)
    return exc


def transport_error(exc: httpx.HTTPError, *, method: str, url: str) -> XetError:
    """httpx's own exceptions (no HTTP answer) -> xetfs errors."""
    what = _what(method, url)
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
    setattr(out, "http_status", 0)
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        setattr(out, "request_sent", False)   # never reached a server: another node may take it (xetfs.transport.endpoints)
    return out


def socket_error(exc: BaseException, *, method: str, url: str) -> XetError:
    """Raw-socket failures (``xetfs.transport.rangeget``: OSError, trio.TooSlowError) -> xetfs errors."""
    what = _what(method, url)
    out: XetError
    if isinstance(exc, trio.TooSlowError):
        out = errors.TransientError(f"{what}: timed out")
    else:
        out = errors.TransientError(f"{what}: cannot reach {urlsplit(url).netloc}: {exc or type(exc).__name__}")
    setattr(out, "http_status", 0)
    return out


def http_status_of(exc: BaseException) -> int | None:
    value = getattr(exc, "http_status", None)
    return value if isinstance(value, int) else None


@contextmanager
def translated(method: str, url: str) -> typing.Iterator[None]:
    try:
        yield
    except httpx.HTTPError as exc:
        raise transport_error(exc, method=method, url=url) from exc


# ----------------------------------------------------------------------------------------------- requests

async def send(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request, body read; raises the mapped error for >= 400 answers and transport failures."""
    with translated(method, url):
        resp = await client.request(method, url, **kwargs)
    err = status_error(resp.status_code, method=method, url=url, headers=resp.headers,
                       body=resp.content, reason=resp.reason_phrase)
    if err is not None:
        raise err
    return resp


@asynccontextmanager
async def stream(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
    """A streamed request: yields the response with its body unread (read it under ``translated``)."""
    with translated(method, url):
        async with client.stream(method, url, **kwargs) as resp:
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
                raise errors.RemoteError(f"{_what(method, url)}: body longer than the {len(view)} bytes expected")
            view[pos:end] = piece
            pos = end
    return pos


def json_body(resp: httpx.Response, what: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise errors.RemoteError(f"{what}: answer is not JSON: {_detail(resp.content)!r}") from None
