"""Connections of ``xetfs serve``: a time limit for receiving a request's head (docs/security.md, "Limits").

aiohttp bounds how long a connection may sit idle (``keepalive_timeout``) but not how long a client may take
to send a request line and headers once it has started. ``HeadTimeoutRunner`` is the app's runner with one
change: its connections give a client ``header_timeout_s`` from the first byte of a request (or from the
connection's opening) to the end of its headers, then close. The timer is armed when the connection opens and
when the first byte of a later keep-alive request arrives, and disarmed when aiohttp has parsed a message;
bytes of a request's body never arm it (body stalls have their own timeout, ``request.BODY_IDLE_TIMEOUT_S``).
Two cases are left to aiohttp's idle timeout (``keepalive_timeout``) instead: a partial head pipelined behind a
complete request, and a keep-alive connection that falls idle right after body bytes its handler left unread
(those bytes arm the timer, which may then close it before the idle timeout would).
"""
from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

HEADER_TIMEOUT_S = 30.0


class HeadTimeoutHandler(RequestHandler):
    """aiohttp's connection protocol, closing a connection whose request head does not arrive in time."""

    def __init__(self, manager: web.Server, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout_s = header_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_request = False         # a parsed request whose response is not finished yet

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count          # aiohttp counts each message its parser completes
        super().data_received(data)
        if self._request_count != parsed:
            self._in_request = True
            self._disarm()
        elif not self._in_request and self._head_timer is None:
            self._arm()                       # the first bytes of a keep-alive connection's next request

    async def finish_response(self, request: web.BaseRequest, resp: web.StreamResponse,
                              start_time: float | None) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._in_request = False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timeout_s > 0:
            self._head_timer = self._loop.call_later(self._head_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expire(self) -> None:
        self._head_timer = None
        if not self._in_request:
            self.force_close()


class _HeadTimeoutServer(web.Server):
    """aiohttp's server (the protocol factory) built from the app's, making ``HeadTimeoutHandler``s."""

    def __init__(self, app_server: web.Server, header_timeout_s: float) -> None:
        super().__init__(app_server.request_handler, request_factory=app_server.request_factory,
                         handler_cancellation=app_server.handler_cancellation, loop=app_server._loop,
                         **app_server._kwargs)
        self._header_timeout_s = header_timeout_s

    def __call__(self) -> RequestHandler:
        return HeadTimeoutHandler(self, self._header_timeout_s, loop=self._loop, **self._kwargs)


class HeadTimeoutRunner(web.AppRunner):
    """``web.AppRunner`` whose connections have a request-head time limit of ``header_timeout_s``."""

    def __init__(self, app: web.Application, *, header_timeout_s: float = HEADER_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout_s = header_timeout_s

    async def _make_server(self) -> web.Server:
        return _HeadTimeoutServer(await super()._make_server(), self._header_timeout_s)
