"""A loopback TCP proxy that can hold a transfer at a known point, for tests that must act mid-transfer.

``GatedProxy(port, hold_up=N)`` forwards every connection to ``127.0.0.1:port``; once N bytes in all have gone
client -> server (``hold_up``) or server -> client (``hold_down``) it forwards nothing more that way and sets
``held``. The test then knows the transfer is running and has moved exactly N bytes, does what it must (kill a
node, kill a mount), and calls ``release()``: the gate opens for good and the held bytes move on. ``hold(way)``
closes the gate at once, or after a given count (a server that hangs mid-answer, its connections open);
``cut()`` then drops those connections (a server that fails mid-answer). ``close()`` stops everything.

``GatedProxy([port_a, port_b])`` sends each new connection to the next port in turn (several nodes of one
cluster behind one address; ``xetfs.testing.hubs``).

Point a client at ``proxy.url``: the server builds its URLs from the Host header, so follow-up requests
(signed data URLs, the token's casUrl) come through the proxy too.
"""
from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from types import TracebackType

_PIECE = 64 * 1024


class GatedProxy:
    def __init__(self, port: int | Sequence[int], hold_up: int | None = None, hold_down: int | None = None) -> None:
        self.targets = [("127.0.0.1", p) for p in ([port] if isinstance(port, int) else port)]
        self.connections = 0
        self.limits = {"up": hold_up, "down": hold_down}
        self.moved = {"up": 0, "down": 0}
        self.held = threading.Event()
        self._open = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="gated-proxy").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_held(self, timeout_s: float = 120.0) -> None:
        if not self.held.wait(timeout_s):
            raise AssertionError(f"the transfer never reached the gate in {timeout_s}s (moved {self.moved})")

    def release(self) -> None:
        """Open the gate for good (held bytes move on)."""
        with self._lock:
            self.limits = {"up": None, "down": None}
        self._open.set()

    def hold(self, way: str = "down", after: int = 0) -> None:
        """Close the gate ``after`` more bytes: nothing more moves that way ("up" or "down") until ``release``."""
        with self._lock:
            self.limits[way] = self.moved[way] + after
            self.held.clear()
        self._open.clear()

    def cut(self) -> None:
        """Drop every open connection now, held bytes unsent (a server failing mid-answer); new connections
        are served as before."""
        with self._lock:
            socks, self._socks = self._socks, []
        _drop(socks)

    def close(self) -> None:
        self._closed = True
        self._open.set()
        self.cut()
        _drop([self._listener])

    def __enter__(self) -> GatedProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.append(s)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._track(client)
            try:
                upstream = socket.create_connection(self.targets[self.connections % len(self.targets)], timeout=10)
            except OSError:
                client.close()
                continue
            self.connections += 1
            upstream.settimeout(None)
            self._track(upstream)
            for src, dst, way in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(target=self._pump, args=(src, dst, way), daemon=True).start()

    def _allowance(self, way: str, n: int) -> int:
        """How many of ``n`` bytes may pass now (the rest waits for ``release``)."""
        with self._lock:
            limit = self.limits[way]
            if limit is None:
                self.moved[way] += n
                return n
            ok = max(0, min(n, limit - self.moved[way]))
            self.moved[way] += ok
            if ok < n:
                self.held.set()
            return ok

    def _pump(self, src: socket.socket, dst: socket.socket, way: str) -> None:
        try:
            while True:
                data = src.recv(_PIECE)
                if not data:
                    break
                ok = self._allowance(way, len(data))
                if ok:
                    dst.sendall(data[:ok])
                if ok < len(data):
                    self._open.wait()
                    if self._closed:
                        break
                    self._allowance(way, len(data) - ok)
                    dst.sendall(data[ok:])
        except OSError:
            pass
        for s in (src, dst):          # one side ended: end the other (a killed node's peer sees the cut)
            _shutdown(s)


def _shutdown(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _drop(socks: list[socket.socket]) -> None:
    for s in socks:
        _shutdown(s)
        s.close()
