"""``xetfs mount --metrics-addr HOST:PORT``: the mount's counters as Prometheus text (docs/architecture.md,
"Metrics", which lists every name).

Nothing is counted twice: at each scrape ``MountCollector`` takes the object ``xetfs stats`` shows (the
``.xetfs-stats`` JSON, ``fs.stats.MountStats``) and the read path's latency histograms (``read.source.Latencies``
in the fetcher's ``ReadStats``) and turns them into metric families; the hot path only keeps the counters it
already kept, plus one histogram bucket increment per fetch and per reconstruction.

Threads: ``prometheus_client``'s HTTP server answers in its own threads, from a registry of this mount only
(never the library's global one). The counters belong to the trio thread, so a scrape asks it for one snapshot
(``trio.from_thread.run_sync``: a copy of some integers, as a read of ``.xetfs-stats`` does); the text is
generated in the HTTP thread.
"""
from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import trio
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from xetfs.errors import ValidationError
from xetfs.read.source import Latencies, ReadStats

log = logging.getLogger(__name__)

TIERS = ("memory", "disk")
_go_float: Callable[[float], str] = floatToGoString     # a bucket bound as Prometheus writes it ("+Inf")

# name -> (help, the key path in the stats JSON). Counters (``_total``) and gauges read straight from it.
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "xetfs_mount_read_bytes_total": ("bytes returned to applications by read()", ("bytes_read",)),
    "xetfs_mount_fetched_bytes_total": ("xorb bytes received from the network", ("bytes_fetched",)),
    "xetfs_mount_fetches_total": ("xorb range fetches completed", ("fetches",)),
    "xetfs_mount_fetches_joined_total": ("fetches served by a running fetch that held all their chunks",
                                         ("fetches_joined",)),
    "xetfs_mount_reconstructions_total": ("reconstruction queries answered", ("reconstructions",)),
    "xetfs_mount_integrity_failures_total": ("fetched xorb ranges whose chunk hashes did not match",
                                             ("integrity_failures",)),
    "xetfs_mount_fetch_retries_total": ("xorb range fetches started again after an integrity failure or an "
                                        "expired data URL", ("retries",)),
    "xetfs_mount_request_retries_total": ("Hub and CAS request attempts repeated by the retry schedule "
                                          "(transient errors: 5xx, timeouts, resets)", ("endpoints", "retries")),
    "xetfs_mount_read_errors_total": ("reads answered with an error (EIO)", ("read_errors",)),
    "xetfs_mount_failovers_total": ("requests moved to another node", ("endpoints", "failovers")),
    "xetfs_mount_cache_unread_evictions_total": ("chunks evicted from the memory tier before any reader read "
                                                 "them (fetched ahead for nothing)",
                                                 ("cache", "memory", "unread_evictions")),
    "xetfs_mount_cache_corrupt_entries_total": ("disk cache entries found damaged (dropped, refetched)",
                                                ("cache", "disk", "corrupt_entries")),
    "xetfs_mount_write_uploaded_bytes_total": ("serialized xorb bytes uploaded by the writeback",
                                               ("write", "uploaded_bytes")),
    "xetfs_mount_write_new_bytes_total": ("written chunk bytes that went into new xorbs", ("write", "new_bytes")),
    "xetfs_mount_write_deduplicated_bytes_total": ("written chunk bytes found already stored (not uploaded)",
                                                   ("write", "deduplicated_bytes")),
    "xetfs_mount_write_commits_total": ("commits made by the writeback", ("write", "commits")),
    "xetfs_mount_write_upload_errors_total": ("failed upload or commit attempts of the writeback",
                                              ("write", "upload_errors")),
    "xetfs_mount_link_degraded_switches_total": ("times the running mount lost the server (went degraded)",
                                                 ("link", "degraded_switches")),
    "xetfs_mount_link_reconnects_total": ("times the server came back (from offline or degraded)",
                                          ("link", "reconnects")),
    "xetfs_mount_link_probes_total": ("reconnect probes sent while offline or degraded", ("link", "probes")),
    "xetfs_mount_follow_checks_total": ("checks of the followed branch's head", ("follow", "checks")),
    "xetfs_mount_follow_check_failures_total": ("checks or tree listings of the followed branch that failed",
                                                ("follow", "failures")),
    "xetfs_mount_follow_changes_total": ("new heads of the followed branch swapped in", ("follow", "changes")),
}
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "xetfs_mount_fetches_in_flight": ("xorb range fetches running now", ("pending", "fetches")),
    "xetfs_mount_reconstructions_in_flight": ("reconstruction queries running now", ("pending", "reconstructions")),
    "xetfs_mount_open_handles": ("open file handles", ("pending", "open_handles")),
    "xetfs_mount_streams_running": ("whole-file streams running (not parked)", ("pending", "streams")),
    "xetfs_mount_write_pending_files": ("closed files not yet committed", ("pending", "files")),
    "xetfs_mount_write_pending_bytes": ("bytes of the files not yet committed", ("pending", "bytes")),
}
# name -> (help, the stats JSON key of each tier); the metric has a ``tier`` label (memory, disk).
PER_TIER: dict[str, tuple[str, str]] = {      # counters, and the one gauge (``_bytes``)
    "xetfs_mount_cache_hits_total": ("chunk look-ups answered by the tier", "hits"),
    "xetfs_mount_cache_misses_total": ("chunk look-ups the tier could not answer", "misses"),
    "xetfs_mount_cache_evictions_total": ("entries the tier dropped to stay in its bound", "evictions"),
    "xetfs_mount_cache_bytes": ("bytes held by the tier", "bytes"),
}
HISTOGRAMS: dict[str, str] = {
    "xetfs_mount_fetch_seconds": "duration of each xorb range fetch attempt (network and decoding)",
    "xetfs_mount_reconstruction_seconds": "duration of each answered reconstruction query",
}
LINK_STATES = ("online", "offline", "degraded")     # ``xetfs.transport.reachability``
OTHERS = {"xetfs_mount_write_conflicts": "staged changes in conflict with the branch (kept, not committed)",
          "xetfs_mount_link_state": "1 for the mount's link state (online, offline, degraded), 0 for the others",
          "xetfs_mount_follow_last_check_timestamp_seconds": "Unix time of the last successful check of the "
                                                             "followed branch's head (0: none yet, or not following)",
          "xetfs_mount_info": "always 1: the mount's repo, commit, mountpoint and whether it is writable"}
NAMES = (*COUNTERS, *GAUGES, *PER_TIER, *HISTOGRAMS, *OTHERS)


@dataclass(frozen=True, slots=True)
class MountSample:
    """One consistent look at the mount, taken on the trio thread."""

    stats: Mapping[str, Any]          # ``MountStats.to_json()``: what ``xetfs stats`` shows
    fetch: Latencies
    reconstruction: Latencies


def sampler(stats: Callable[[], Mapping[str, Any]], read: ReadStats) -> Callable[[], MountSample]:
    """What a scrape runs on the trio thread: the stats object and copies of the latency histograms."""
    return lambda: MountSample(stats(), read.fetch_seconds.copy(), read.reconstruction_seconds.copy())


def _at(stats: Mapping[str, Any], path: tuple[str, ...]) -> float:
    value: Any = stats
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return float(value) if isinstance(value, (int, float)) else 0.0   # e.g. no ``write`` on a read-only mount


def _unix_s(iso: object) -> float:
    """An ISO 8601 time of the stats object as Unix seconds (0 when absent or unreadable)."""
    if not isinstance(iso, str):
        return 0.0
    try:
        return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _histogram(name: str, lat: Latencies) -> HistogramMetricFamily:
    buckets, total = [], 0
    for bound, count in zip((*lat.bounds, float("inf")), lat.counts):
        total += count
        buckets.append((_go_float(bound), float(total)))
    return HistogramMetricFamily(name, HISTOGRAMS[name], buckets=buckets, sum_value=lat.sum_s)


def families(sample: MountSample) -> Iterator[Metric]:
    """The metric families of one sample (every name of ``NAMES``, on any mount)."""
    s = sample.stats
    for name, (doc, path) in COUNTERS.items():
        yield CounterMetricFamily(name, doc, value=_at(s, path))
    for name, (doc, path) in GAUGES.items():
        yield GaugeMetricFamily(name, doc, value=_at(s, path))
    for name, (doc, key) in PER_TIER.items():
        family: CounterMetricFamily | GaugeMetricFamily = (
            CounterMetricFamily(name, doc, labels=["tier"]) if name.endswith("_total")
            else GaugeMetricFamily(name, doc, labels=["tier"]))
        for tier in TIERS:
            family.add_metric([tier], _at(s, ("cache", tier, key)))
        yield family
    yield _histogram("xetfs_mount_fetch_seconds", sample.fetch)
    yield _histogram("xetfs_mount_reconstruction_seconds", sample.reconstruction)
    write = s.get("write")
    conflicts = write.get("conflicts") if isinstance(write, Mapping) else None
    yield GaugeMetricFamily("xetfs_mount_write_conflicts", OTHERS["xetfs_mount_write_conflicts"],
                            value=len(conflicts) if isinstance(conflicts, list) else 0)
    link = s.get("link")
    state = link.get("state") if isinstance(link, Mapping) else "online"
    states = GaugeMetricFamily("xetfs_mount_link_state", OTHERS["xetfs_mount_link_state"], labels=["state"])
    for name in LINK_STATES:
        states.add_metric([name], 1.0 if name == state else 0.0)
    yield states
    follow = s.get("follow")
    yield GaugeMetricFamily("xetfs_mount_follow_last_check_timestamp_seconds",
                            OTHERS["xetfs_mount_follow_last_check_timestamp_seconds"],
                            value=_unix_s(follow.get("last_checked") if isinstance(follow, Mapping) else None))
    info = GaugeMetricFamily("xetfs_mount_info", OTHERS["xetfs_mount_info"],
                             labels=["repo", "commit", "mountpoint", "writable"])
    info.add_metric([str(s.get("repo", "")), str(s.get("commit", "")), str(s.get("mountpoint", "")),
                     "true" if s.get("writable") else "false"], 1.0)
    yield info


class MountCollector(Collector):
    """Reads the mount at scrape time (from an HTTP thread) through the trio thread's token."""

    def __init__(self, sample: Callable[[], MountSample], token: trio.lowlevel.TrioToken) -> None:
        self._sample = sample
        self._token = token

    def collect(self) -> Iterator[Metric]:
        try:
            sample = trio.from_thread.run_sync(self._sample, trio_token=self._token)
        except trio.RunFinishedError:      # unmounting: nothing left to report
            return
        yield from families(sample)


def parse_addr(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6) -> (host, port); ``ValueError`` with the reason."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"not HOST:PORT: {text!r} (e.g. 127.0.0.1:9100)")
    return host, int(port)


async def serve_metrics(addr: tuple[str, int], sample: Callable[[], MountSample],
                        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the mount's metrics at ``http://HOST:PORT/metrics`` until cancelled; ``started`` with the bound
    address (port 0 picks a free one). A refused address fails with one line (``ValidationError``)."""
    registry = CollectorRegistry()
    registry.register(MountCollector(sample, trio.lowlevel.current_trio_token()))
    host, port = addr
    try:
        server, thread = start_http_server(port, host, registry)
    except OSError as exc:
        raise ValidationError(f"cannot serve metrics at {host}:{port}: {exc.strerror or exc}") from None
    bound = (host, int(server.server_address[1]))
    log.info("metrics at http://%s:%d/metrics", *bound)
    task_status.started(bound)
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_stop, server, thread)


def _stop(server: Any, thread: threading.Thread) -> None:
    server.shutdown()          # ends serve_forever (it polls twice a second)
    server.server_close()
    thread.join()
