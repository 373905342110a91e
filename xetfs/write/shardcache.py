"""The local shard cache: shards this machine uploaded to one endpoint, kept under the cache dir so the
next upload (``xetfs upload`` or a writable mount) deduplicates against them before asking the server
(docs/architecture.md, "The write path"; docs/protocol.md, deduplication).

Bounded by file count and by bytes: the newest shards are kept, the oldest unlinked. Files are written
atomically (``xetfs.osutil.atomic``), so a crash never leaves a torn shard; an unreadable one is dropped.

The cache can name xorbs the server no longer holds: the server's data was reset behind the same URL, or its
garbage collector removed them. The server then refuses the shard of an upload that deduplicated against
them (400, "xorb not stored"); ``upload_session`` reports that as ``StaleShardCache``, and
``upload.prepare_commit_ops`` clears the cache and uploads again without it (docs/architecture.md, "The write
path").
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from pathlib import Path

from xetfs.core.shard import Shard, parse_shard, serialize_upload_shard
from xetfs.errors import XetError
from xetfs.osutil.atomic import write_atomic

log = logging.getLogger(__name__)


class StaleShardCache(XetError):
    """The server refused the shard of an upload that deduplicated against the local shard cache."""

    status = 400

DEFAULT_MAX_FILES = 64
DEFAULT_MAX_BYTES = 64 << 20


class ShardCache:
    """Upload shards sent to one endpoint, the newest ``max_files`` (and at most ``max_bytes``) kept."""

    def __init__(self, root: Path, max_files: int = DEFAULT_MAX_FILES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root
        self.max_files = max_files
        self.max_bytes = max_bytes
        self._parsed: OrderedDict[str, Shard] = OrderedDict()

    def save(self, shard: Shard) -> None:
        """Keep ``shard`` (worker thread), then trim the oldest past the bounds."""
        data = serialize_upload_shard(shard)
        if len(data) > self.max_bytes:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{hashlib.sha256(data).hexdigest()[:16]}.shard"
        write_atomic(self.root / name, data, 0o600)
        self._trim()

    def clear(self) -> None:
        """Forget every shard kept (worker thread): they name xorbs the server does not hold."""
        for p in self.root.glob("*.shard"):
            p.unlink(missing_ok=True)
        self._parsed.clear()

    def _names(self) -> list[str]:
        """The names kept, oldest first."""
        if not self.root.exists():
            return []
        kept: list[str] = []
        total = 0
        for p in sorted(self.root.glob("*.shard"), reverse=True):
            try:
                size = p.stat().st_size
            except FileNotFoundError:
                continue
            if len(kept) >= self.max_files or total + size > self.max_bytes:
                break
            kept.append(p.name)
            total += size
        return kept[::-1]

    def _trim(self) -> None:
        keep = set(self._names())
        for p in self.root.glob("*.shard"):
            if p.name not in keep:
                p.unlink(missing_ok=True)

    def load(self) -> list[Shard]:
        """The cached shards, oldest first (worker thread; parsed once, then kept in memory)."""
        names = self._names()
        for name in names:
            if name not in self._parsed:
                try:
                    self._parsed[name] = parse_shard((self.root / name).read_bytes())
                except (OSError, XetError) as exc:
                    log.warning("shard cache: dropping %s: %s", name, exc)
                    (self.root / name).unlink(missing_ok=True)
        for name in [n for n in self._parsed if n not in names]:
            del self._parsed[name]
        return [self._parsed[n] for n in names if n in self._parsed]


def shard_cache_dir(cache_dir: Path, endpoint: str) -> Path:
    """Where the shards uploaded to ``endpoint`` are kept under ``cache_dir``."""
    return cache_dir / "shards" / hashlib.sha256(endpoint.encode()).hexdigest()[:16]
