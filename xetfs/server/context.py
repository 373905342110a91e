"""What every route and service shares: ``State`` (storage, metadata, auth, regions), metrics and audit.

- ``State``: storage is ``LocalStorage(DIR/objects)`` unless another backend is given (``xetfs serve
  --storage s3://…``); metadata is SQLite under DIR unless another database is given (``--db
  postgresql://…``). ``State.direct_url(key)`` is the read-path switch: with a store that can presign
  (``stores.base.Presigning``) and without ``proxy_reads``, reconstruction fetch URLs are presigned GETs on
  the object store (data bytes never pass through this node); otherwise None, and the CAS routes hand out
  this node's own signed ``/v1/data`` URLs (served from any backend).
- ``Metrics``: the Prometheus counters (``prometheus_client``, one registry per ``State``), served at
  ``/metrics``.
- ``AuditLog``: append-only JSON lines (``DIR/audit.log``) for uploads and commits: who, repo, what, bytes.

Blocking work (SQL, file reads, validation, decoding) runs in worker threads via ``State.run``.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Info

from xetfs.server.auth import Auth
from xetfs.server.metadata.store import Metadata
from xetfs.server.regions import RegionMap
from xetfs.server.stores.base import Closable, Presigning, Storage
from xetfs.server.stores.local import NO_SPACE_ERRNOS, LocalStorage, no_space

T = TypeVar("T")

# The server's counters (docs/architecture.md, "Metrics"): name -> help. Call sites count with ``Metrics.inc``.
COUNTERS: dict[str, str] = {
    "xetfs_cas_xorb_upload_bytes_total": "serialized xorb bytes received and stored (new xorbs only)",
    "xetfs_cas_xorbs_stored_total": "new xorbs stored",
    "xetfs_cas_shard_upload_bytes_total": "shard bytes received",
    "xetfs_cas_sha256_verified_bytes_total": "file bytes read back to check the sha256 a shard claims",
    "xetfs_cas_data_bytes_served_total": "xorb bytes served by this node's /v1/data URLs",
    "xetfs_cas_reconstructions_total": "file reconstructions answered",
    "xetfs_cas_dedup_queries_total": "global dedup queries",
    "xetfs_cas_dedup_hits_total": "global dedup queries answered with a shard",
    "xetfs_hub_commits_total": "commits applied",
    "xetfs_hub_resolve_bytes_served_total": "file bytes served by the Hub resolve route",
}

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class Metrics:
    """The server's Prometheus metrics in a registry of their own (``/metrics`` renders it with
    ``prometheus_client.generate_latest``); thread-safe (worker threads count too)."""

    def __init__(self, region: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters = {name: Counter(name, doc, registry=self.registry) for name, doc in COUNTERS.items()}
        self._requests = Counter("xetfs_http_requests_total", "HTTP requests answered, by method and status",
                                 ["method", "status"], registry=self.registry)
        Info("xetfs_node", "this node (its region: xetfs serve --region)",
             registry=self.registry).info({"region": region or ""})

    def inc(self, name: str, value: float = 1) -> None:
        self._counters[name].inc(value)

    def request(self, method: str, status: int) -> None:
        """Count one answered request; an unusual method counts as ``OTHER`` (callers choose methods: the
        label's values stay a fixed set)."""
        self._requests.labels(method if method in METHODS else "OTHER", str(status)).inc()


class AuditLog:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def write(self, who: str, repo: str | None, action: str, what: str, size_bytes: int = 0) -> None:
        line = json.dumps({"ts": round(time.time(), 3), "token": who, "repo": repo, "action": action,
                           "what": what, "bytes": size_bytes}, separators=(",", ":"))
        try:
            with self._lock, open(self._path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as exc:
            raise no_space(exc) if exc.errno in NO_SPACE_ERRNOS else exc


class State:
    def __init__(self, data_dir: Path, admin_token: str, public_read: bool = False,
                 storage: Storage | None = None, dedup_keyed: bool = True, proxy_reads: bool = False,
                 meta: Metadata | None = None, regions: RegionMap | None = None) -> None:
        self.data_dir = data_dir
        self.regions = regions if regions is not None else RegionMap()
        self.dedup_keyed = dedup_keyed      # dedup answers: random HMAC key per answer, or plain chunk hashes
        if storage is None:
            local = LocalStorage(data_dir / "objects")
            local.cleanup_temp()
            storage = local
        self.storage: Storage = storage
        self.proxy_reads = proxy_reads
        self.meta = meta if meta is not None else Metadata(data_dir / "metadata.sqlite3")
        self.auth = Auth(data_dir, self.meta, admin_token, public_read)
        self.metrics = Metrics(self.regions.region)
        self.uploads: dict[str, int] = {}     # uploads in flight per token (request.upload_slot; event loop only)
        self.audit = AuditLog(data_dir / "audit.log")

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Blocking work (DB, disk, CPU) off the event loop."""
        return await asyncio.to_thread(partial(fn, *args, **kwargs))

    @property
    def direct_reads(self) -> bool:
        """Clients fetch xorb bytes from the object store itself (presigned URLs), not through this node."""
        return not self.proxy_reads and isinstance(self.storage, Presigning)

    def direct_url(self, key: str, expires_s: int) -> str | None:
        """A URL on the object store itself that anyone may GET (any Range) for ``expires_s`` seconds, or
        None when reads go through this node (``proxy_reads``, or a store that cannot presign)."""
        if self.proxy_reads or not isinstance(self.storage, Presigning):
            return None
        return self.storage.presign_get(key, expires_s)

    def close(self) -> None:
        self.meta.close()
        if isinstance(self.storage, Closable):
            self.storage.close()


STATE: web.AppKey[State] = web.AppKey("state", State)


def state_of(request: web.Request) -> State:
    return request.app[STATE]
