"""Class 5, bounded resources: callers are authenticated before any body is read, bodies have per-route
limits, and one token has at most 8 uploads in flight; 40 stalled clients do not grow the server's memory."""
from __future__ import annotations

import select
import socket
from pathlib import Path

from xetfs.testing.cas import build_file, cas_token
from xetfs.testing.server import ServerHandle

MiB = 1024 * 1024


def _rss_bytes(srv: ServerHandle) -> int:
    assert srv.proc is not None
    for line in Path(f"/proc/{srv.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _stalled(srv: ServerHandle, head: str, sent: bytes) -> socket.socket:
    """A client that sends ``head`` and part of its body, then stops sending."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    s.sendall(head.encode() + sent)
    return s


def _status(s: socket.socket) -> int:
    line = b""
    while not line.endswith(b"\r\n"):
        got = s.recv(1)
        assert got, "connection closed without an answer"
        line += got
    return int(line.split()[1])


def test_forty_stalled_clients_get_answers_without_their_bodies_being_read(server: ServerHandle) -> None:
    srv = server
    srv.create_repo("org/res")
    tok = cas_token(srv, "org/res")
    xorb = build_file(seed=501).xorb.hash
    before = _rss_bytes(srv)
    part = b"x" * MiB
    anonymous = [_stalled(srv, "POST /api/repos/create HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
                               "Content-Length: 16000000\r\n\r\n", part) for _ in range(20)]
    anonymous += [_stalled(srv, "POST /api/validate-yaml HTTP/1.1\r\nHost: h\r\nContent-Length: 16000000\r\n\r\n",
                           part) for _ in range(10)]
    assert [_status(s) for s in anonymous] == [401] * 30
    uploads = [_stalled(srv, f"POST /v1/xorbs/default/{xorb} HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {tok}\r\n"
                             f"Content-Length: {60 * MiB}\r\n\r\n", part) for _ in range(10)]
    answered: list[socket.socket] = []
    while len(answered) < 2:                    # the 2 beyond the cap are refused without their bodies
        ready, _, _ = select.select([s for s in uploads if s not in answered], [], [], 20)
        assert ready, "no answer"
        answered += ready
    assert len(answered) == 2 and [_status(s) for s in answered] == [429, 429]
    status, _, _ = srv.request("GET", "/health", token=None)
    assert status == 200
    grown = _rss_bytes(srv) - before
    assert grown < 48 * MiB, grown / MiB
    too_big = _stalled(srv, "POST /api/repos/create HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
                            f"Authorization: Bearer {srv.token}\r\nContent-Length: {MiB}\r\n\r\n", b"{")
    assert _status(too_big) == 400
    for s in anonymous + uploads + [too_big]:
        s.close()
