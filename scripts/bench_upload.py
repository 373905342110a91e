#!/usr/bin/env python3
"""Upload throughput: ``xetfs upload`` against the official ``hf_xet`` client, measured in the same run.

Prints ONE JSON object:
  xetfs_mb_s          ``xetfs upload`` (CLI process: preupload, chunk, dedup, xorbs, shard, commit) of one file
  hf_xet_mb_s         hf_xet ``XetSession().new_upload_commit(...)`` of the same file with the server's write
                      token and a fresh HF_HOME (CAS upload only: no Hub commit)
  ratio               xetfs_mb_s / hf_xet_mb_s (target >= 0.5)
  second_upload_mb_s  ``xetfs upload`` of identical content again (dedup: no new xorb bytes expected)
  second_upload_xorb_bytes   xorb bytes the server received during that second upload

Each upload goes to its own freshly started ``xetfs serve`` with the same settings (one server would let
the second client deduplicate against the first). The clients alternate for ``--rounds`` rounds and the best
time of each is kept (the shared machine's load drifts). Data is random (incompressible), written once.
Usage: scripts/bench_upload.py [--size-mib 1024] [--rounds 2] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xetfs.testing.server import ServerHandle, running_server  # noqa: E402

METRIC = "xetfs_cas_xorb_upload_bytes_total"
MiB = 1024 * 1024

XETFS_UPLOAD = r"""
import json, resource, sys
from xetfs.cli.main import main
rc = main(sys.argv[1:])
print(json.dumps({"peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), file=sys.stderr)
sys.exit(rc)
"""

HF_XET_UPLOAD = r"""
import json, sys, hf_xet
cas_url, token, exp, path = sys.argv[1:5]
commit = hf_xet.XetSession().new_upload_commit(endpoint=cas_url, token=token, token_expiry_unix_secs=int(float(exp)))
upload = commit.start_upload_file(path)
commit.wait_to_finish()
"""


def make_file(path: Path, size_bytes: int) -> None:
    block = 64 * MiB
    with open(path, "wb") as f:
        left = size_bytes
        while left:
            n = min(block, left)
            f.write(os.urandom(n))
            left -= n


def xetfs_upload(srv: ServerHandle, repo: str, path: Path, dest: str, cache_dir: Path) -> tuple[float, dict[str, int]]:
    """(seconds, the CLI's --json stats plus its peak RSS). ``cache_dir`` holds its local shard cache."""
    cmd = [sys.executable, "-c", XETFS_UPLOAD, "upload", repo, str(path), "--path-in-repo", dest,
           "--endpoint", srv.url, "--token", srv.token, "--json", "--cache-dir", str(cache_dir)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    stats = json.loads(proc.stdout)
    stats.update(json.loads(proc.stderr.strip().splitlines()[-1]))
    return elapsed, stats


def hf_xet_upload(srv: ServerHandle, repo: str, path: Path, hf_home: Path) -> float:
    status, _, body = srv.request("GET", f"/api/models/{repo}/xet-write-token/main")
    if status != 200:
        raise RuntimeError(f"write token: {status} {body!r}")
    tok = json.loads(body)
    env = dict(os.environ, HF_HOME=str(hf_home), HF_XET_TELEMETRY_ENABLED="false",
               HF_XET_CLIENT_LEGACY_DIRECT_XORB_UPLOAD="true")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", HF_XET_UPLOAD, tok["casUrl"], tok["accessToken"], str(tok["exp"]), str(path)],
                   check=True, env=env, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per client (best is kept)")
    parser.add_argument("--keep", type=Path, default=None, help="work directory to keep (default: temporary)")
    args = parser.parse_args()
    size = args.size_mib * MiB
    hf_times: list[float] = []
    x_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="xetfs-bench-upload-") as tmp_name:
        tmp = args.keep or Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        data = tmp / "random.bin"
        make_file(data, size)
        for r in range(args.rounds):   # alternate the clients: this machine's load drifts
            with running_server(tmp / f"srv-hf-{r}") as srv:
                srv.create_repo("bench/hf")
                hf_times.append(hf_xet_upload(srv, "bench/hf", data, tmp / f"hf_home-{r}"))
                hf_bytes = srv.metrics().get(METRIC, 0.0)
            shutil.rmtree(tmp / f"srv-hf-{r}", ignore_errors=True)
            with running_server(tmp / f"srv-xetfs-{r}") as srv:
                srv.create_repo("bench/xetfs")
                x_s, first = xetfs_upload(srv, "bench/xetfs", data, "a.bin", tmp / f"cache-{r}")
                x_times.append(x_s)
                if r == args.rounds - 1:
                    x2_s, second = xetfs_upload(srv, "bench/xetfs", data, "b.bin", tmp / f"cache-{r}")
            shutil.rmtree(tmp / f"srv-xetfs-{r}", ignore_errors=True)
    mb = size / 1e6
    print(json.dumps({
        "size_bytes": size, "rounds": args.rounds,
        "xetfs_mb_s": round(mb / min(x_times), 1), "hf_xet_mb_s": round(mb / min(hf_times), 1),
        "ratio": round(min(hf_times) / min(x_times), 3), "target_ratio": 0.5,
        "xetfs_mb_s_all": [round(mb / t, 1) for t in x_times], "hf_xet_mb_s_all": [round(mb / t, 1) for t in hf_times],
        "xetfs_xorb_bytes": first["xorb_bytes_uploaded"], "hf_xet_xorb_bytes_metric": hf_bytes,
        "xetfs_peak_rss_mib": round(first["peak_rss_kib"] / 1024),
        "second_upload_mb_s": round(mb / x2_s, 1), "second_upload_xorb_bytes": second["xorb_bytes_uploaded"],
        "second_upload_deduped_bytes": second["deduped_bytes"],
    }))


if __name__ == "__main__":
    main()
