"""What every route and service shares: ``State`` (storage, metadata, auth, regions), metrics and audit.

- ``State``: storage is ``LocalStorage(DIR/objects)`` unless another backend is given (``xetfs serve
  --storage s3://…``); metadata is SQLite under DIR unless another database is given (``--db
  postgresql://…``). ``State.direct_url(key)`` is the read-path switch: with a store that can presign
  (``stores.base.Presigning``) and without ``proxy_reads``, reconstruction fetch URLs are presigned GETs on
  the object store (data bytes never pass through this node); otherwise None, and the CAS routes hand out
  this node's own signed ``/v1/data`` URLs (served from any backend).
- ``Metrics``: Prometheus counters, rendered at ``/metrics``.
- ``AuditLog``: append-only JSON lines (``DIR/audit.log``) for uploads and commits: who, repo, what, bytes.

Blocking work (SQL, file reads, validation, decoding) runs in worker threads via ``State.run``.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from xetfs.server.auth import Auth
from xetfs.server.metadata.store import Metadata
from xetfs.server.regions import RegionMap
from xetfs.server.stores.base import Closable, Presigning, Storage
from xetfs.server.stores.local import NO_SPACE_ERRNOS, LocalStorage, no_space

T = TypeVar("T")

COUNTERS = ("xetfs_cas_xorb_upload_bytes_total", "xetfs_cas_xorbs_stored_total",
            "xetfs_cas_shard_upload_bytes_total", "xetfs_cas_data_bytes_served_total",
            "xetfs_cas_reconstructions_total", "xetfs_cas_dedup_queries_total", "xetfs_cas_dedup_hits_total",
            "xetfs_hub_commits_total", "xetfs_hub_resolve_bytes_served_total")


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
        self.metrics = Metrics()
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
