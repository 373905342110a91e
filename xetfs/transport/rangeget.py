"""Raw HTTP/1.1 range GETs straight into a caller's buffer, for xorb data URLs (docs/protocol.md, "Reconstruction").

Why (docs/architecture.md, "Performance"): on loopback the HTTP client is the read path's first bottleneck.
httpx moves a body through h11 in pieces and each piece is copied again into the destination
(~0.6-1.5 GB/s); a trio socket ``recv_into`` a preallocated buffer lets the kernel copy the body once, where
it belongs (~2.7-4.2 GB/s).

Scope: ``GET`` of one ``bytes=a-b`` range of an ``http://`` URL (the CAS data route, or a presigned store URL
on plain HTTP). The only answers handled here are the ones a range server gives:

- ``206`` with ``Content-Length`` equal to the range size: the body is received into ``out``;
- ``>= 400``: a short error body is read and the status is mapped by ``xetfs.protocol.status.status_error``, the
  single status mapping of the clients (403 on a data URL -> ``Forbidden``, 5xx -> ``TransientError``...);
- anything else (``200`` whole body, chunked, multipart, 1xx/3xx, https URLs) raises ``RangeUnsupported``
  and the caller uses its httpx path, which handles every form.

``get_into`` receives a whole body into one buffer; ``open_range`` hands the body over to be received in
order, piece by piece (``RangeBody.recv_into``), so a fetch range costs one request however many buffers it
passes through (``xetfs.read.pieces``).

Transport failures and timeouts become ``TransientError`` through ``socket_error``. Every
wait is bounded: connect by ``connect_timeout_s``, each send by ``write_timeout_s``, each receive by
``read_timeout_s`` (an idle timeout: a slow body that keeps moving is not cut off).

Keep-alive pool: after a complete body a connection goes back to a per-host idle list (at most
``max_keepalive_connections``); a request on a reused connection that the server had meanwhile closed (no
byte of an answer received) is repeated once on a fresh connection. No lock: each request owns its socket.
``aclose`` closes the idle connections (``make_http_client``'s client calls it on close).
"""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio

from xetfs.errors import RemoteError, TransientError
from xetfs.protocol.status import request_label, status_error
from xetfs.transport.params import DEFAULT_HTTP, HttpParams

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
MAX_ERROR_BODY_BYTES = 64 * 1024
_HEAD_END = b"\r\n\r\n"


def socket_error(exc: BaseException, url: str) -> TransientError:
    """A raw-socket failure (OSError, trio.TooSlowError) of a GET -> ``TransientError`` with ``http_status`` 0."""
    what = request_label("GET", url)
    if isinstance(exc, trio.TooSlowError):
        return TransientError(f"{what}: timed out", http_status=0)
    return TransientError(f"{what}: cannot reach {urlsplit(url).netloc}: {exc or type(exc).__name__}", http_status=0)


async def _recv_into(sock: trio.socket.SocketType, view: memoryview, timeout_s: float) -> int:
    """One receive, bounded by the idle timeout ``timeout_s``."""
    with trio.fail_after(timeout_s):
        return int(await sock.recv_into(view))


class RangeUnsupported(Exception):
    """The answer is not a plain ``206`` (or an error status): use the general HTTP client instead."""


class _StaleConnection(Exception):
    """A reused keep-alive connection was closed by the server before answering."""


class RangeBody:
    """The body of one ``206`` answer (``RangeGetter.open_range``), received in order into the caller's
    buffers. ``remaining`` counts the bytes not received yet."""

    def __init__(self, sock: trio.socket.SocketType, url: str, headers: dict[str, str], extra: bytes, size: int,
                 read_timeout_s: float) -> None:
        self._sock = sock
        self._read_timeout_s = read_timeout_s
        self.url = url
        self.headers = headers
        self._extra = memoryview(extra)      # body bytes that came with the head
        self.remaining = size
        self.keep = headers.get("connection", "").lower() != "close"

    async def recv_into(self, out: memoryview) -> int:
        """Fill ``out`` (at most ``remaining`` bytes long) with the next body bytes; ``len(out)``.
        A connection lost or stalled past the read timeout -> ``TransientError``."""
        if len(out) > self.remaining:
            raise ValueError(f"{len(out)} bytes asked, {self.remaining} left in the body")
        n = min(len(out), len(self._extra))
        out[:n] = self._extra[:n]
        self._extra = self._extra[n:]
        try:
            while n < len(out):
                got = await _recv_into(self._sock, out[n:], self._read_timeout_s)
                if not got:
                    raise OSError(f"connection closed with {self.remaining - n} body bytes to come")
                n += got
        except (OSError, trio.TooSlowError) as exc:
            raise socket_error(exc, self.url) from exc
        finally:
            self.remaining -= n
        return n


class RangeGetter:
    """Range GETs over pooled raw trio sockets; see the module docstring."""

    def __init__(self, params: HttpParams = DEFAULT_HTTP) -> None:
        self.params = params
        self._idle: dict[tuple[str, int], list[trio.socket.SocketType]] = {}
        self._closed = False
        self.connections_opened = 0

    async def get_into(self, url: str, start: int, end_incl: int, out: memoryview,
                       headers: Mapping[str, str] | None = None) -> tuple[dict[str, str], int]:
        """Receive bytes ``[start, end_incl]`` of ``url`` into ``out`` (exactly that long): (headers, count)."""
        if end_incl - start + 1 != len(out):
            raise ValueError(f"a {len(out)}-byte buffer for a {end_incl - start + 1}-byte range")
        async with self.open_range(url, start, end_incl, headers) as body:
            return body.headers, await body.recv_into(out)

    @asynccontextmanager
    async def open_range(self, url: str, start: int, end_incl: int,
                         headers: Mapping[str, str] | None = None) -> AsyncIterator[RangeBody]:
        """One GET of bytes ``[start, end_incl]`` of ``url``, answered ``206``: its body, to receive in pieces
        (``RangeBody.recv_into``). The connection goes back to the pool when the whole body was received,
        else it is closed."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise RangeUnsupported(parts.scheme)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", f"Range: bytes={start}-{end_incl}",
                 "Accept-Encoding: identity", f"User-Agent: {self.params.user_agent}",
                 *(f"{k}: {v}" for k, v in (headers or {}).items())]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        address = (parts.hostname, parts.port or 80)
        body: RangeBody | None = None
        try:
            for attempt in range(2):
                sock, reused = await self._checkout(address)
                try:
                    body = await self._exchange(sock, reused, request, url, end_incl - start + 1)
                    break
                except _StaleConnection:
                    sock.close()
                    if attempt:
                        raise OSError("connection closed before an answer") from None
                except BaseException:
                    sock.close()
                    raise
        except (OSError, trio.TooSlowError, _StaleConnection) as exc:
            raise socket_error(exc, url) from exc
        assert body is not None
        try:
            yield body
        finally:
            if body.remaining == 0 and body.keep:
                self._checkin(address, sock)
            else:
                sock.close()

    async def _exchange(self, sock: trio.socket.SocketType, reused: bool, request: bytes, url: str,
                        size: int) -> RangeBody:
        """Send the request, read the answer's head: the body of a ``206`` of ``size`` bytes, else raise."""
        try:
            await self._send(sock, request)
            status, reason, headers, extra = await self._read_head(sock)
        except (OSError, _StaleConnection):
            if reused:
                raise _StaleConnection() from None
            raise
        length = headers.get("content-length")
        if status >= 400:
            body = await self._read_error_body(sock, extra, length)
            err = status_error(status, method="GET", url=url, now_unix_s=time.time(), headers=headers, body=body,
                               reason=reason)
            assert err is not None
            raise err
        if status != 206 or length is None or "transfer-encoding" in headers:
            raise RangeUnsupported(f"status {status}")
        if int(length) != size:
            raise RemoteError(f"GET {urlsplit(url).path}: {length} body bytes for a {size}-byte range")
        if len(extra) > size:
            raise RemoteError("more body bytes than announced")
        return RangeBody(sock, url, headers, extra, size, self.params.read_timeout_s)

    # -- connections -----------------------------------------------------------------------------------------

    async def _checkout(self, address: tuple[str, int]) -> tuple[trio.socket.SocketType, bool]:
        idle = self._idle.get(address)
        if idle:
            return idle.pop(), True
        sock = trio.socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with trio.fail_after(self.params.connect_timeout_s):
                await sock.connect(address)
        except BaseException:
            sock.close()
            raise
        self.connections_opened += 1
        return sock, False

    def _checkin(self, address: tuple[str, int], sock: trio.socket.SocketType) -> None:
        idle = self._idle.setdefault(address, [])
        if self._closed or len(idle) >= self.params.max_keepalive_connections:
            sock.close()
        else:
            idle.append(sock)

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for sock in idle:
                sock.close()
        self._idle.clear()

    # -- wire ------------------------------------------------------------------------------------------------

    async def _send(self, sock: trio.socket.SocketType, data: bytes) -> None:
        view = memoryview(data)
        while view:
            with trio.fail_after(self.params.write_timeout_s):
                sent = await sock.send(view)
            view = view[sent:]

    async def _read_head(self, sock: trio.socket.SocketType) -> tuple[int, str, dict[str, str], bytes]:
        """Status, reason, lower-cased headers, and the body bytes that arrived with the head."""
        buf = bytearray(16 * 1024)
        n = 0
        while True:
            if n == len(buf):
                if n >= MAX_HEAD_BYTES:
                    raise RemoteError("HTTP answer head too long")
                buf.extend(bytes(len(buf)))
            got = await _recv_into(sock, memoryview(buf)[n:], self.params.read_timeout_s)
            if not got:
                raise _StaleConnection() if n == 0 else OSError("connection closed inside an answer head")
            n += got
            end = buf.find(_HEAD_END, 0, n)
            if end >= 0:
                break
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        try:
            version, code, *rest = lines[0].split(" ", 2)
            status = int(code)
        except ValueError:
            raise RemoteError(f"bad HTTP status line {lines[0][:100]!r}") from None
        if not version.startswith("HTTP/1."):
            raise RangeUnsupported(version)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return status, rest[0] if rest else "", headers, bytes(buf[end + len(_HEAD_END):n])

    async def _read_error_body(self, sock: trio.socket.SocketType, extra: bytes, length: str | None) -> bytes:
        """Up to MAX_ERROR_BODY_BYTES of an error answer's body (the connection is not reused)."""
        want = min(int(length), MAX_ERROR_BODY_BYTES) if length is not None and length.isdigit() else 0
        body = bytearray(extra[:want])
        while len(body) < want:
            chunk = bytearray(want - len(body))
            try:
                got = await _recv_into(sock, memoryview(chunk), self.params.read_timeout_s)
            except (OSError, trio.TooSlowError):
                break
            if not got:
                break
            body += chunk[:got]
        return bytes(body)
