"""httpx failures become xetfs errors in one place; sockets read in large pieces. (Statuses: tests/protocol.)"""
from __future__ import annotations


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


async def _serve_once(listener: trio.SocketListener, body: bytes) -> None:
    stream = await listener.accept()
    async with stream:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive_some(65536)
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        await stream.send_all(head + body)


@pytest.mark.parametrize("read_size", [64 * 1024, 1024 * 1024])
def test_large_socket_reads(read_size: int) -> None:
    """With the 1 MiB backend, body pieces exceed httpx's default 64 KiB; the bytes are intact either way."""
    body = bytes(range(256)) * (BODY_BYTES // 256)

    async def main() -> list[int]:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        sizes: list[int] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve_once, listeners[0], body)
            await trio.sleep(0.2)   # let the server fill the socket buffers
            async with http.make_http_client(HttpParams(read_size_bytes=read_size)) as client:
                url = f"http://127.0.0.1:{port}/"
                async with http.stream(client, "GET", url) as resp:
                    buf = bytearray(BODY_BYTES)
                    view = memoryview(buf)
                    pos = 0
                    async for piece in resp.aiter_raw():
                        sizes.append(len(piece))
                        view[pos:pos + len(piece)] = piece
                        pos += len(piece)
                    assert bytes(buf) == body
        await listeners[0].aclose()
        return sizes

    sizes = trio.run(main)
    if read_size > 64 * 1024:
        assert max(sizes) > 64 * 1024
    else:
        assert max(sizes) <= 64 * 1024
