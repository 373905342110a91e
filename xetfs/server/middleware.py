"""The one translation of errors to HTTP, and the access log (docs/architecture.md).

- ``error_middleware``: ``XetError`` -> ``XetError.status`` with a JSON body ``{"error": message}`` (plus
  ``X-Error-Code`` for the Hub's named not-found errors, ``errors.CodedNotFound``); aiohttp's 405 (known
  path, other method) becomes 404, because hf_xet treats 405 as fatal where 404 means "fall back"; every
  unknown route is a JSON 404; anything unexpected is a logged 500. ``errors.StreamAborted`` (a streamed
  answer failed after its status was sent) passes through: aiohttp then drops the connection.
- ``AccessLogger``: one INFO line per request (method, path, status, bytes, duration; as fields of their own
  in ``--log-format json``) and request counters.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from xetfs.errors import XetError
from xetfs.server.context import STATE
from xetfs.server.errors import CodedNotFound, StreamAborted

log = logging.getLogger(__name__)


def json_error(status: int, message: str, code: str | None = None) -> web.Response:
    safe = "".join(c if " " <= c < "\x7f" else "?" for c in message[:200])
    headers = {"X-Error-Code": code, "X-Error-Message": safe} if code else None
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except XetError as exc:
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc)
        code = exc.code if isinstance(exc, CodedNotFound) else None
        return json_error(exc.status, str(exc) or type(exc).__name__, code)
    except web.HTTPException as exc:
        if exc.status in (404, 405):     # never 405: unknown routes are 404
            return json_error(404, f"no route {request.method} {request.path}")
        if exc.status >= 400:
            return json_error(exc.status, exc.reason)
        raise
    except (asyncio.CancelledError, ConnectionResetError, StreamAborted):
        raise
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return json_error(500, "internal server error")


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, duration_s: float) -> None:
        state = request.app[STATE] if isinstance(request, web.Request) else None
        if state is not None:
            state.metrics.request(request.method, response.status)
        size = response.content_length if response.content_length is not None else response.body_length
        self.logger.info("%s %s %d %dB %.1fms", request.method, request.path, response.status, size,
                         duration_s * 1000, extra={"method": request.method, "path": request.path,
                                                   "status": response.status, "bytes": size,
                                                   "duration_ms": round(duration_s * 1000, 3)})
