"""Operations routes: ``GET /health`` (status and this node's region) and ``GET /metrics`` (Prometheus text)."""
from __future__ import annotations

from aiohttp import web

from xetfs.server.context import state_of


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "region": state_of(request).regions.region})


async def _metrics(request: web.Request) -> web.Response:
    st = state_of(request)
    info = f'# TYPE xetfs_node_info gauge\nxetfs_node_info{{region="{st.regions.region or ""}"}} 1\n'
    return web.Response(text=st.metrics.render() + info, content_type="text/plain")


def setup(app: web.Application) -> None:
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
