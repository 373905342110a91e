#!/usr/bin/env python3
"""Writable mount throughput: write a file through ``xetfs mount`` until committed vs ``hf_xet`` uploading it.

Prints ONE JSON object:
  mount_mb_s            copy a random file into a writable mount (fresh cache dir) and wait until the
                        writeback committed it (close durable locally + chunk + dedup + xorbs + shard + commit)
  mount_close_mb_s      the copy alone (until close returned: data durable in the staging area)
  hf_xet_mb_s           hf_xet ``XetSession().new_upload_commit(...)`` of the same file (fresh HF_HOME; CAS
                        upload only, no Hub commit) — the same helper as scripts/bench_upload.py
  ratio                 mount_mb_s / hf_xet_mb_s (target >= 0.5)
  rewrite_mb_s          the identical content written again over the same path, until committed
  rewrite_xorb_bytes    xorb bytes the server stored for that rewrite (dedup: 0 expected)
  rewrite_dedup_bytes   chunk bytes the mount found already stored during the rewrite

Each client gets its own freshly started ``xetfs serve`` (one server would let the second client deduplicate
against the first). The clients alternate for ``--rounds`` rounds and the best time of each is kept.
Usage: scripts/bench_write.py [--size-mib 1024] [--rounds 1] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_upload import METRIC, hf_xet_upload, make_file  # noqa: E402

from xetfs.testing.server import running_server  # noqa: E402
from xetfs.testing.mount import mounted, wait_committed  # noqa: E402

MiB = 1024 * 1024


def timed_write(m, data: Path, dest: str) -> tuple[float, float, dict]:
    """(seconds until close returned, seconds until committed, the mount's write counters)."""
    start = time.perf_counter()
    shutil.copyfile(data, m.path / dest)
    closed = time.perf_counter() - start
    write = wait_committed(m, timeout_s=3600)
    return closed, time.perf_counter() - start, write


def mount_round(tmp: Path, data: Path, r: int, rewrite: bool) -> dict:
    out: dict = {}
    with running_server(tmp / f"srv-mount-{r}") as srv:
        srv.create_repo("bench/mount")
        with mounted(srv, "bench/mount", tmp / f"mnt-{r}", cache_dir=tmp / f"cache-{r}",
                     args=["--memory-cache-size", "1G"]) as m:
            out["closed_s"], out["committed_s"], first = timed_write(m, data, "random.bin")
            out["xorb_bytes"] = srv.metrics().get(METRIC, 0.0)
            out["peak_rss_mib"] = round(m.hwm_bytes() / MiB)
            if rewrite:
                before = srv.metrics().get(METRIC, 0.0)
                _, out["rewrite_s"], second = timed_write(m, data, "random.bin")
                out["rewrite_xorb_bytes"] = srv.metrics().get(METRIC, 0.0) - before
                out["rewrite_dedup_bytes"] = second["deduplicated_bytes"] - first["deduplicated_bytes"]
                out["commits"] = second["commits"]
    shutil.rmtree(tmp / f"srv-mount-{r}", ignore_errors=True)
    shutil.rmtree(tmp / f"cache-{r}", ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per client (best is kept)")
    parser.add_argument("--keep", type=Path, default=None, help="work directory to keep (default: temporary)")
    args = parser.parse_args()
    size = args.size_mib * MiB
    hf_times: list[float] = []
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="xetfs-bench-write-") as tmp_name:
        tmp = args.keep or Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        data = tmp / "random.bin"
        make_file(data, size)
        for r in range(args.rounds):
            with running_server(tmp / f"srv-hf-{r}") as srv:
                srv.create_repo("bench/hf")
                hf_times.append(hf_xet_upload(srv, "bench/hf", data, tmp / f"hf_home-{r}"))
            shutil.rmtree(tmp / f"srv-hf-{r}", ignore_errors=True)
            rounds.append(mount_round(tmp, data, r, rewrite=r == args.rounds - 1))
    mb = size / 1e6
    best = min(x["committed_s"] for x in rounds)
    last = rounds[-1]
    print(json.dumps({
        "size_bytes": size, "rounds": args.rounds,
        "mount_mb_s": round(mb / best, 1), "hf_xet_mb_s": round(mb / min(hf_times), 1),
        "ratio": round(min(hf_times) / best, 3), "target_ratio": 0.5,
        "mount_close_mb_s": round(mb / min(x["closed_s"] for x in rounds), 1),
        "mount_mb_s_all": [round(mb / x["committed_s"], 1) for x in rounds],
        "hf_xet_mb_s_all": [round(mb / t, 1) for t in hf_times],
        "mount_xorb_bytes": last["xorb_bytes"], "mount_peak_rss_mib": last["peak_rss_mib"],
        "rewrite_mb_s": round(mb / last["rewrite_s"], 1), "rewrite_xorb_bytes": last["rewrite_xorb_bytes"],
        "rewrite_dedup_bytes": last["rewrite_dedup_bytes"], "commits": last["commits"],
    }))


if __name__ == "__main__":
    main()
