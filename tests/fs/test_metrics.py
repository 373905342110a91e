"""``xetfs mount --metrics-addr`` (fs/metrics.py) on real FUSE and a real ``xetfs serve``: a scrape in the middle
of a large read and one after it show the bytes-fetched counter growing, every documented name is served, and
the write side counts a commit. Scrapes are plain HTTP GETs (urllib), parsed by prometheus_client's parser."""
from __future__ import annotations

import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from xetfs.fs.metrics import NAMES, parse_addr
from xetfs.testing.mount import mounted, seeded_server, wait_committed, xetfs_cli
from xetfs.testing.server import make_bytes
from xetfs.testing.services import free_port
from xetfs.testing.sync import wait_until


MiB = 1024 * 1024
DOCS = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def scrape(port: int) -> dict[str, float]:
    """GET /metrics -> {"name{label=value,...}": value}, every sample of every family."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def served_names(samples: dict[str, float]) -> set[str]:
    names = {key.partition("{")[0] for key in samples}
    return names | {n.removesuffix(suffix) for n in names for suffix in ("_bucket", "_count", "_sum")}


@pytest.mark.fuse
@pytest.mark.usefixtures("fuse")
def test_a_scrape_during_a_read_and_after_it_shows_the_fetched_bytes_growing(tmp_path: Path) -> None:
    size = 40 * MiB
    data = make_bytes("random", size, seed=21)
    port = free_port()
    with seeded_server(tmp_path, "t/metrics", {"big.bin": data}) as (srv, _):
        # a 16 MiB memory tier keeps the readahead at 4 MiB: the first fifth of the file does not fetch the rest
        args = ["--metrics-addr", f"127.0.0.1:{port}", "--memory-cache-size", "16M", "--poll-interval", "1"]
        with mounted(srv, "t/metrics", tmp_path / "mnt", args=args) as m:
            before = scrape(port)
            assert before["xetfs_mount_fetched_bytes_total"] == 0
            with open(m.path / "big.bin", "rb", buffering=0) as f:
                head = f.read(8 * MiB)
                during = scrape(port)
                rest = f.read()
            after = scrape(port)
            assert head + rest == data

            assert 0 < during["xetfs_mount_fetched_bytes_total"] < size / 2, "only the head was fetched yet"
            assert after["xetfs_mount_fetched_bytes_total"] >= size > during["xetfs_mount_fetched_bytes_total"]
            assert during["xetfs_mount_read_bytes_total"] >= 8 * MiB
            assert after["xetfs_mount_read_bytes_total"] >= size
            assert after["xetfs_mount_fetch_seconds_count"] == after["xetfs_mount_fetches_total"] >= 1
            assert after["xetfs_mount_fetch_seconds_bucket{le=+Inf}"] == after["xetfs_mount_fetch_seconds_count"]
            assert after["xetfs_mount_reconstruction_seconds_count"] == after["xetfs_mount_reconstructions_total"] >= 1
            assert after["xetfs_mount_cache_misses_total{tier=memory}"] > 0
            assert during["xetfs_mount_open_handles"] >= 1, "big.bin is open"
            assert after["xetfs_mount_integrity_failures_total"] == after["xetfs_mount_fetch_retries_total"] == 0
            stats = m.stats()
            assert after["xetfs_mount_fetched_bytes_total"] == stats["bytes_fetched"], "the same counter"
            assert after[f"xetfs_mount_info{{commit={stats['commit']},mountpoint={m.path},repo=t/metrics@main,"
                         "writable=true}"] == 1

            for sample in (before, during, after):
                assert set(NAMES) <= served_names(sample), set(NAMES) - served_names(sample)
            assert after["xetfs_mount_link_state{state=online}"] == 1 and after["xetfs_mount_link_state{state=offline}"] == 0

            # the followed branch's polls (the head does not move)
            polled = wait_until(lambda: (p := scrape(port))["xetfs_mount_follow_checks_total"] >= 2 and p,
                                "two checks of the head")
            assert polled["xetfs_mount_follow_last_check_timestamp_seconds"] > 0
            assert polled["xetfs_mount_follow_changes_total"] == polled["xetfs_mount_follow_check_failures_total"] == 0

            # the write side: one file written, committed once
            (m.path / "new.bin").write_bytes(make_bytes("random", 2 * MiB, seed=22))
            wait_committed(m)
            written = scrape(port)
            assert written["xetfs_mount_write_commits_total"] == 1
            assert written["xetfs_mount_write_uploaded_bytes_total"] >= 2 * MiB
            assert written["xetfs_mount_write_pending_files"] == written["xetfs_mount_write_conflicts"] == 0


def test_every_served_name_is_documented() -> None:
    table = set(re.findall(r"^\| `(xetfs_mount_[a-z_]+)", DOCS.read_text(), re.MULTILINE))
    assert table == set(NAMES)


@pytest.mark.fuse
@pytest.mark.usefixtures("fuse")
def test_a_metrics_address_in_use_fails_the_mount_with_one_line(tmp_path: Path) -> None:
    with seeded_server(tmp_path, "t/busy", {"a.bin": b"a" * 1000}) as (srv, _), socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "mnt").mkdir()
        done = xetfs_cli("mount", "t/busy", str(tmp_path / "mnt"), "--endpoint", srv.url, "--cache-dir",
                         str(tmp_path / "cache"), "--metrics-addr", f"127.0.0.1:{port}", check=False,
                         env={"XETFS_TOKEN": srv.token})
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == [f"xetfs: error: cannot serve metrics at 127.0.0.1:{port}: "
                                                    "Address already in use"]
        assert not any(Path(tmp_path / "mnt").iterdir()) and not (tmp_path / "mnt").is_mount()


def test_metrics_addresses_parse() -> None:
    assert parse_addr("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_addr("[::1]:0") == ("::1", 0)
    for bad in ("9100", ":9100", "host:", "host:port", "host:70000"):
        with pytest.raises(ValueError, match="not HOST:PORT"):
            parse_addr(bad)


def test_a_read_only_mount_serves_every_name_with_zero_write_metrics() -> None:
    """The families of one sample, through a real registry and the text format (no mount needed)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector

    from xetfs.fs.metrics import MountSample, families
    from xetfs.read.source import Latencies

    fetch = Latencies()
    for seconds in (0.0005, 0.003, 0.003, 100.0):
        fetch.observe(seconds)
    stats = {"writable": False, "write": None, "endpoints": {"urls": ["http://a:1"], "failovers": 3, "retries": 2}, "repo": "o/r@v1", "commit": "c" * 40,
             "mountpoint": "/mnt", "bytes_read": 5, "bytes_fetched": 2**53,
             "cache": {"memory": {"hits": 1, "misses": 2, "bytes": 3, "evictions": 4},
                       "disk": {"hits": 5, "misses": 6, "corrupt_entries": 7, "bytes": 8, "evictions": 9}},
             "pending": {"fetches": 1, "reconstructions": 0, "open_handles": 2, "files": 0, "bytes": 0}}

    class One(Collector):
        def collect(self) -> Iterator[Metric]:
            return families(MountSample(stats, fetch, Latencies()))

    registry = CollectorRegistry()
    registry.register(One())
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    assert set(NAMES) <= served_names(samples)
    assert samples["xetfs_mount_fetched_bytes_total"] == 2**53, "exact up to 2**53"
    assert samples["xetfs_mount_cache_evictions_total{tier=memory}"] == 4
    assert samples["xetfs_mount_cache_evictions_total{tier=disk}"] == 9
    assert samples["xetfs_mount_cache_corrupt_entries_total"] == 7
    assert samples["xetfs_mount_failovers_total"] == 3 and samples["xetfs_mount_request_retries_total"] == 2
    assert all(v == 0 for k, v in samples.items() if k.startswith("xetfs_mount_write_") and "_created" not in k)
    assert [samples[f"xetfs_mount_fetch_seconds_bucket{{le={le}}}"] for le in ("0.001", "0.0025", "0.005", "60.0",
                                                                                  "+Inf")] == [1, 1, 3, 3, 4]
    assert samples["xetfs_mount_fetch_seconds_count"] == 4
    assert samples["xetfs_mount_fetch_seconds_sum"] == 0.0005 + 0.003 + 0.003 + 100.0
    assert samples[f"xetfs_mount_info{{commit={'c' * 40},mountpoint=/mnt,repo=o/r@v1,writable=false}}"] == 1
    assert [samples[f"xetfs_mount_link_state{{state={s}}}"] for s in ("online", "offline", "degraded")] == [1, 0, 0]
    assert samples["xetfs_mount_follow_last_check_timestamp_seconds"] == 0


def test_link_and_follow_sections_become_metrics() -> None:
    from xetfs.fs.metrics import MountSample, families
    from xetfs.read.source import Latencies

    stats = {"link": {"state": "degraded", "degraded_switches": 2, "reconnects": 1, "probes": 5},
             "follow": {"checks": 7, "failures": 1, "changes": 3, "last_checked": "2026-01-02T03:04:05Z"}}
    values = {}
    for family in families(MountSample(stats, Latencies(), Latencies())):
        for s in family.samples:
            values[s.name + "".join(f"{{{v}}}" for v in s.labels.values())] = s.value
    assert [values[f"xetfs_mount_link_state{{{s}}}"] for s in ("online", "offline", "degraded")] == [0, 0, 1]
    assert (values["xetfs_mount_link_degraded_switches_total"], values["xetfs_mount_link_reconnects_total"],
            values["xetfs_mount_link_probes_total"]) == (2, 1, 5)
    assert (values["xetfs_mount_follow_checks_total"], values["xetfs_mount_follow_check_failures_total"],
            values["xetfs_mount_follow_changes_total"]) == (7, 1, 3)
    assert values["xetfs_mount_follow_last_check_timestamp_seconds"] == 1767323045.0


def test_every_metric_path_names_a_number_of_the_stats_object() -> None:
    """A renamed stats field must fail here, not turn its metric into a silent 0. (``write`` is the writeback's
    own mapping: the FUSE test above checks it on a real writable mount.)"""
    from xetfs.fs.metrics import COUNTERS, GAUGES, PER_TIER, TIERS
    from xetfs.fs.stats import CacheStats, EndpointStats, FollowStats, MountStats, PendingStats
    from xetfs.transport.reachability import LinkStats

    snapshot = {k: 1 for k in ("memory_hits", "memory_misses", "memory_bytes", "memory_evictions",
                               "memory_unread_evictions", "disk_hits",
                               "disk_misses", "disk_corrupt", "disk_bytes", "disk_evictions")}
    stats = MountStats(
        writable=False, write=None, endpoints=EndpointStats(["http://a:1"], {}, 1, 1), pid=1, repo="o/r@main",
        commit="c" * 40, mountpoint="/mnt", bytes_read=1, bytes_fetched=1, cache=CacheStats.of(snapshot),
        reconstructions=1, fetches=1, retries=1, integrity_failures=1, read_errors=1,
        pending=PendingStats(1, 1, 1, 1, 1, 1), fetches_joined=1,
        follow=FollowStats("main", 1.0, "c" * 40, "2026-01-02T03:04:05+00:00", 1, 1, None, 1, None, 1, None),
        link=LinkStats("online", 0.0, 1, 1, 1, 1, None)).to_json()
    paths = [p for _, p in (*COUNTERS.values(), *GAUGES.values())]
    paths += [("cache", tier, key) for _, key in PER_TIER.values() for tier in TIERS]
    for path in paths:
        if path[0] == "write":
            continue
        value: object = stats
        for key in path:
            assert isinstance(value, dict) and key in value, path
            value = value[key]
        assert value == 1, path
