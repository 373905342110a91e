"""Operations routes: ``GET /health`` (status and this node's region) and ``GET /metrics`` (Prometheus text
of the node's registry, ``context.Metrics``; names in docs/architecture.md, "Metrics")."""
from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from xetfs.server.context import state_of


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "region": state_of(request).regions.region})


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(state_of(request).metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
