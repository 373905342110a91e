"""The ``xetfs serve`` aiohttp application: wiring, the one status mapping, metrics, audit, access log.

Routes live in ``cas_routes`` (shared/xet-protocol.md §7), ``hub_routes`` (hub-api.md §4) and ``resolve``
(hub-api.md §4.8, §6); this module holds what they share:

- ``State``: storage, metadata, auth, metrics, audit log and the data directory. Storage is
  ``LocalStorage(DIR/objects)`` unless another backend is given (``xetfs serve --storage s3://…``);
  metadata is SQLite under DIR unless another database is given (``xetfs serve --db postgresql://…``).
  ``State.direct_url(key)`` is the read-path switch: with a store that can presign (``S3Storage.presign_get``) and without ``proxy_reads``, reconstruction fetch URLs are
  presigned GETs on the object store (data bytes never pass through this node); otherwise None, and
  ``cas_routes`` hands out its own signed ``/v1/data`` URLs (served from any backend).
- ``error_middleware``: the ONE translation of errors to HTTP. ``XetError`` -> ``XetError.status`` with a
  JSON body ``{"error": message}`` (plus ``X-Error-Code`` when the error names one: RepoNotFound,
  RevisionNotFound, EntryNotFound); aiohttp's 405 (known path, other method) becomes 404, because hf_xet
  treats 405 as fatal where 404 means "fall back" (§7.2); every unknown route is a JSON 404; anything
  unexpected is a logged 500.
- ``AccessLogger``: one INFO line per request (method, path, status, bytes, duration) and request counters.
- ``Metrics``: Prometheus text at ``/metrics``, plus ``xetfs_node_info{region="…"} 1`` naming this node's region.
- ``State.regions``: which CAS URL the xet token routes hand out (``regions.RegionMap``; default: this node);
  the node's region is also in ``GET /health``.
- ``AuditLog``: append-only JSON lines (``DIR/audit.log``) for uploads and commits: who, repo, what, bytes.

Blocking work (SQLite, file reads, validation, decoding) runs in worker threads via ``State.run``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from xetfs.errors import NotFound, XetError
from xetfs.server.auth import Auth
from xetfs.server.metadata.store import Metadata
from xetfs.server.regions import RegionMap
from xetfs.server.stores.local import LocalStorage, Storage

log = logging.getLogger(__name__)
T = TypeVar("T")

COUNTERS = ("xetfs_cas_xorb_upload_bytes_total", "xetfs_cas_xorbs_stored_total",
            "xetfs_cas_shard_upload_bytes_total", "xetfs_cas_data_bytes_served_total",
            "xetfs_cas_reconstructions_total", "xetfs_cas_dedup_queries_total", "xetfs_cas_dedup_hits_total",
            "xetfs_hub_commits_total", "xetfs_hub_resolve_bytes_served_total")


class RepoNotFound(NotFound):
    code = "RepoNotFound"


class RevisionNotFound(NotFound):
    code = "RevisionNotFound"


class EntryNotFound(NotFound):
    code = "EntryNotFound"


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, float] = {name: 0 for name in COUNTERS}
        self.requests: dict[tuple[str, int], int] = defaultdict(int)

    def inc(self, name: str, value: float = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + value

    def request(self, method: str, status: int) -> None:
        with self._lock:
            self.requests[(method, status)] += 1

    def render(self) -> str:
        lines = []
        with self._lock:
            for name, value in sorted(self.counters.items()):
                lines += [f"# TYPE {name} counter", f"{name} {_metric_value(value)}"]
            lines.append("# TYPE xetfs_http_requests_total counter")
            for (method, status), n in sorted(self.requests.items()):
                lines.append(f'xetfs_http_requests_total{{method="{method}",status="{status}"}} {n}')
        return "\n".join(lines) + "\n"


def _metric_value(value: float) -> str:
    """Byte counters are integers: print them exactly (``%g`` keeps only 6 significant digits)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class AuditLog:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def write(self, who: str, repo: str | None, action: str, what: str, size_bytes: int = 0) -> None:
        line = json.dumps({"ts": round(time.time(), 3), "token": who, "repo": repo, "action": action,
                           "what": what, "bytes": size_bytes}, separators=(",", ":"))
        with self._lock, open(self._path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


class State:
    def __init__(self, data_dir: Path, admin_token: str, public_read: bool = False,
                 storage: Storage | None = None, dedup_keyed: bool = True, proxy_reads: bool = False,
                 meta: Metadata | None = None, regions: RegionMap | None = None) -> None:
        self.data_dir = data_dir
        self.regions = regions if regions is not None else RegionMap()
        self.dedup_keyed = dedup_keyed      # §6.3: random HMAC key per answer, or plain chunk hashes
        if storage is None:
            local = LocalStorage(data_dir / "objects")
            local.cleanup_temp()
            storage = local
        self.storage: Storage = storage
        self.proxy_reads = proxy_reads
        self.meta = meta if meta is not None else Metadata(data_dir / "metadata.sqlite3")
        self.auth = Auth(data_dir, self.meta, admin_token, public_read)
        self.metrics = Metrics()
        self.audit = AuditLog(data_dir / "audit.log")

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Blocking work (DB, disk, CPU) off the event loop."""
        return await asyncio.to_thread(partial(fn, *args, **kwargs))

    @property
    def direct_reads(self) -> bool:
        """Clients fetch xorb bytes from the object store itself (presigned URLs), not through this node."""
        return not self.proxy_reads and hasattr(self.storage, "presign_get")

    def direct_url(self, key: str, expires_s: int) -> str | None:
        """A URL on the object store itself that anyone may GET (any Range) for ``expires_s`` seconds, or
        None when reads go through this node (``proxy_reads``, or a store that cannot presign)."""
        if not self.direct_reads:
            return None
        return self.storage.presign_get(key, expires_s)  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        self.meta.close()
        close = getattr(self.storage, "close", None)
        if close is not None:
            close()


STATE: web.AppKey[State] = web.AppKey("state", State)


def state_of(request: web.Request) -> State:
    return request.app[STATE]


def json_error(status: int, message: str, code: str | None = None) -> web.Response:
    headers = {"X-Error-Code": code, "X-Error-Message": message[:200].encode("ascii", "replace").decode()} \
        if code else None
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except XetError as exc:
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc)
        return json_error(exc.status, str(exc) or type(exc).__name__, getattr(exc, "code", None))
    except web.HTTPException as exc:
        if exc.status in (404, 405):     # §7.2: never 405; unknown routes are 404
            return json_error(404, f"no route {request.method} {request.path}")
        if exc.status >= 400:
            return json_error(exc.status, exc.reason)
        raise
    except (asyncio.CancelledError, ConnectionResetError):
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
                         duration_s * 1000)


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "region": state_of(request).regions.region})


async def _metrics(request: web.Request) -> web.Response:
    st = state_of(request)
    info = f'# TYPE xetfs_node_info gauge\nxetfs_node_info{{region="{st.regions.region or ""}"}} 1\n'
    return web.Response(text=st.metrics.render() + info, content_type="text/plain")


def make_app(state: State) -> web.Application:
    from xetfs.server.routes import cas as cas_routes
    from xetfs.server.routes import hub as hub_routes
    from xetfs.server.routes import resolve

    app = web.Application(middlewares=[error_middleware], client_max_size=1024 ** 3)
    app[STATE] = state
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    cas_routes.setup(app)
    hub_routes.setup(app)
    resolve.setup(app)
    return app
