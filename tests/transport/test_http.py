"""httpx failures become xetfs errors in one place; sockets read in large pieces. (Statuses: tests/protocol.)"""
from __future__ import annotations


import socket
import threading

import httpx
import pytest
import trio

from xetfs import errors
from xetfs.transport import http
from xetfs.transport.params import HttpParams
from xetfs.testing.services import free_port

URL = "http://127.0.0.1:1/api/models/o/n/tree/main"


@pytest.mark.parametrize("exc,cls", [
    (httpx.ConnectError("refused"), errors.TransientError), (httpx.ReadTimeout("slow"), errors.TransientError),
    (httpx.RemoteProtocolError("eof"), errors.TransientError), (httpx.UnsupportedProtocol("ftp"), errors.ValidationError),
])
def test_transport_mapping(exc: httpx.HTTPError, cls: type[errors.XetError]) -> None:
    mapped = http.transport_error(exc, method="GET", url=URL)
    assert type(mapped) is cls


def test_connection_refused_is_transient() -> None:
    async def main() -> None:
        async with http.make_http_client() as client:
            with pytest.raises(errors.TransientError, match="cannot reach"):
                await http.send(client, "GET", f"http://127.0.0.1:{free_port()}/x")

    trio.run(main)


BODY_BYTES = 8 * 1024 * 1024


def _serve_once(listener: socket.socket, body: bytes, full: threading.Event) -> None:
    """Answer one request with ``body``; ``full`` is set once the socket buffers hold all they can (a
    non-blocking send would block), so the client reads from a full buffer."""
    listener.settimeout(60)
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(60)
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(65536)
        data = memoryview(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                          + body)
        conn.setblocking(False)
        try:
            while data:
                data = data[conn.send(data[:65536]):]
        except BlockingIOError:
            pass
        full.set()
        conn.settimeout(60)
        conn.sendall(data)


@pytest.mark.parametrize("read_size", [64 * 1024, 1024 * 1024])
def test_large_socket_reads(read_size: int) -> None:
    """With the 1 MiB backend, body pieces exceed httpx's default 64 KiB; the bytes are intact either way."""
    body = bytes(range(256)) * (BODY_BYTES // 256)

    async def main() -> list[int]:
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        full = threading.Event()
        sizes: list[int] = []
        server = threading.Thread(target=_serve_once, args=(listener, body, full))
        server.start()
        try:
            async with http.make_http_client(HttpParams(read_size_bytes=read_size)) as client:
                url = f"http://127.0.0.1:{port}/"
                async with http.stream(client, "GET", url) as resp:
                    assert await trio.to_thread.run_sync(full.wait, 60)    # the first read finds full buffers
                    buf = bytearray(BODY_BYTES)
                    view = memoryview(buf)
                    pos = 0
                    async for piece in resp.aiter_raw():
                        sizes.append(len(piece))
                        view[pos:pos + len(piece)] = piece
                        pos += len(piece)
                    assert bytes(buf) == body
        finally:
            server.join()
            listener.close()
        return sizes

    sizes = trio.run(main)
    if read_size > 64 * 1024:
        assert max(sizes) > 64 * 1024
    else:
        assert max(sizes) <= 64 * 1024
