"""Class 5, bounded resources: callers are authenticated before any body is read, bodies have per-route
limits, and one token has at most 8 uploads in flight; 40 stalled clients do not grow the server's memory;
a client that does not finish its request line and headers in time (``--header-timeout``) is closed."""
from __future__ import annotations

import select
import socket
import time
from pathlib import Path

from xetfs.testing.cas import build_file, cas_token
from xetfs.testing.server import ServerHandle, running_server

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


HEAD_BOUND_S = 2.0          # the server's --header-timeout in the tests below
CLOSED_WITHIN_S = 15.0      # generous against the bound, well under the 75 s idle keep-alive timeout


def _closed_by_server(s: socket.socket, trickle: bytes = b"") -> bool:
    """Whether the server closes ``s`` within CLOSED_WITHIN_S (sending ``trickle`` every 0.25 s meanwhile)."""
    s.settimeout(0.25)
    deadline = time.monotonic() + CLOSED_WITHIN_S
    while time.monotonic() < deadline:
        try:
            got = s.recv(65536)
        except socket.timeout:
            if trickle:
                s.sendall(trickle)
            continue
        except ConnectionResetError:
            return True
        if not got:
            return True
    return False


def _connect(srv: ServerHandle, head: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    s.sendall(head)
    return s


def test_a_client_that_does_not_finish_its_request_head_is_closed(tmp_path: Path) -> None:
    with running_server(tmp_path, extra_args=["--header-timeout", f"{HEAD_BOUND_S:g}"]) as srv:
        partial_line = _connect(srv, b"GET /health HT")
        assert _closed_by_server(partial_line)
        trickling = _connect(srv, b"GET /health HTTP/1.1\r\nHost: h\r\n")
        assert _closed_by_server(trickling, trickle=b"X-Slow: 1\r\n"), "bytes that never end the head do not help"
        silent = _connect(srv, b"")
        assert _closed_by_server(silent)
        keep_alive = _connect(srv, b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n")
        assert _status(keep_alive) == 200
        keep_alive.sendall(b"GET /hea")                 # the next request on the same connection stalls
        assert _closed_by_server(keep_alive)
        status, _, _ = srv.request("GET", "/health", token=None)
        assert status == 200


def test_a_slow_upload_body_is_not_cut_by_the_head_limit(tmp_path: Path) -> None:
    with running_server(tmp_path, extra_args=["--header-timeout", f"{HEAD_BOUND_S:g}"]) as srv:
        body = b'{"type": "model", "name": "slow", "organization": "org"}'
        s = _connect(srv, f"POST /api/repos/create HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {srv.token}\r\n"
                          f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        for i in range(0, len(body), 4):               # 14 pieces over ~4 s: twice the head bound
            time.sleep(0.3)
            s.sendall(body[i:i + 4])
        assert _status(s) == 200
        s.close()


def test_many_clients_stalled_in_their_heads_hold_bounded_memory_and_are_closed(tmp_path: Path) -> None:
    with running_server(tmp_path, extra_args=["--header-timeout", f"{HEAD_BOUND_S:g}"]) as srv:
        before = _rss_bytes(srv)
        stalled = [_connect(srv, b"GET /" + b"a" * 60_000) for _ in range(100)]        # just under the line limit
        stalled += [_connect(srv, b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-Big: " + b"b" * 8000) for _ in range(100)]
        status, _, _ = srv.request("GET", "/health", token=None)
        assert status == 200
        grown = _rss_bytes(srv) - before
        assert grown < 48 * MiB, grown / MiB
        assert all(_closed_by_server(s) for s in stalled)
        for s in stalled:
            s.close()
