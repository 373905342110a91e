"""The mount's counters (fs/stats.py): typed sections in, the documented JSON object out, and back."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from xetfs.errors import ValidationError
from xetfs.fs.stats import STATS_NAME, CacheStats, EndpointStats, MountStats, PendingStats, read_stats
from xetfs.read.source import OpenFileStats
from xetfs.transport.endpoints import NodeHealth
from xetfs.transport.reachability import LinkStats


def _stats(write: dict[str, object] | None) -> MountStats:
    cache = CacheStats.of({"memory_hits": 1, "memory_misses": 2, "memory_bytes": 3, "disk_hits": 4,
                           "disk_misses": 5, "disk_corrupt": 6, "disk_bytes": 7, "disk_evictions": 8})
    return MountStats(
        writable=write is not None, write=write,
        endpoints=EndpointStats(["http://a:1", "http://b:2"], {"http://a:1": NodeHealth(0.5, False, 1)}, 2),
        pid=42, repo="org/m@main", commit="c" * 40, mountpoint="/mnt", bytes_read=10, bytes_fetched=11,
        cache=cache, reconstructions=12, fetches=13, retries=14, integrity_failures=15, read_errors=16,
        pending=PendingStats(fetches=17, reconstructions=18, open_handles=19, streams=0, files=20, bytes=21),
        fetches_joined=22, open_files=[OpenFileStats("m.safetensors", 1, 23, 24, 0, {"tensor_aligned": 2})],
        link=LinkStats("degraded", 25.5, 3, 1, 0, 2, "cannot reach a:1"))


def test_the_served_object_has_the_documented_keys() -> None:
    obj = json.loads(json.dumps(_stats({"pending_files": 20, "pending_bytes": 21}).to_json()))
    assert obj == {
        "writable": True, "write": {"pending_files": 20, "pending_bytes": 21},
        "endpoints": {"urls": ["http://a:1", "http://b:2"], "failovers": 2, "retries": 0,
                      "nodes": {"http://a:1": {"latency_s": 0.5, "down": False, "failures": 1}}},
        "pid": 42, "repo": "org/m@main", "commit": "c" * 40, "mountpoint": "/mnt", "bytes_read": 10,
        "bytes_fetched": 11,
        "cache": {"memory": {"hits": 1, "misses": 2, "bytes": 3, "evictions": 0, "unread_evictions": 0},
                  "disk": {"hits": 4, "misses": 5, "corrupt_entries": 6, "bytes": 7, "evictions": 8}},
        "reconstructions": 12, "fetches": 13, "retries": 14, "integrity_failures": 15, "read_errors": 16,
        "pending": {"fetches": 17, "reconstructions": 18, "open_handles": 19, "streams": 0, "files": 20,
                    "bytes": 21},
        "fetches_joined": 22,
        "open_files": [{"path": "m.safetensors", "handles": 1, "bytes_read": 23, "bytes_fetched": 24,
                        "whole_file_streams": 0, "decisions": {"tensor_aligned": 2}}],
        "follow": None,
        "link": {"state": "degraded", "since_unix_s": 25.5, "failures_in_row": 3, "degraded_switches": 1,
                 "reconnects": 0, "probes": 2, "last_error": "cannot reach a:1"}}


def test_a_cache_without_a_disk_tier_reports_zero_disk_bytes() -> None:
    cache = CacheStats.of({"memory_hits": 0, "memory_misses": 0, "memory_bytes": 0, "disk_hits": 0,
                           "disk_misses": 0, "disk_corrupt": 0})
    assert (cache.disk.bytes, cache.disk.evictions) == (0, 0)


def test_read_stats_reads_back_what_a_mount_serves(tmp_path: Path) -> None:
    served = _stats(None).to_json()
    (tmp_path / STATS_NAME).write_text(json.dumps(served))
    assert read_stats(tmp_path) == json.loads(json.dumps(served))
    with pytest.raises(ValidationError, match="not a running xetfs mount"):
        read_stats(tmp_path / "nowhere")
    (tmp_path / STATS_NAME).write_text("[1]")
    with pytest.raises(ValidationError, match="unexpected contents"):
        read_stats(tmp_path)
