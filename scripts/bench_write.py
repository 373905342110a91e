#!/usr/bin/env python3
"""Writable mount throughput: write a file through ``xetfs mount`` until committed vs ``hf_xet`` uploading it.

Prints ONE JSON object:
  mount_mb_s            copy a random file into a writable mount (fresh cache dir) and wait until the
                        writeback committed it (close durable locally + chunk + dedup + xorbs + shard + commit)
  mount_close_mb_s      the copy alone (until close returned: data durable in the staging area)
  mount_1mib_writes_*   the same, the file written with 1 MiB write() calls (as cp and savers that write whole
                        buffers do) instead of shutil.copyfile's sendfile, whose 64 KiB pieces become as many FUSE
                        writes; ratio_1mib_writes = that rate / hf_xet_mb_s
  mount_writeback_cache_*  copyfile into a mount with --writeback-cache (the kernel gathers the 64 KiB writes into
                        requests of up to 1 MiB); ratio_writeback_cache = that rate / hf_xet_mb_s
  hf_xet_mb_s           hf_xet ``XetSession().new_upload_commit(...)`` of the same file (fresh HF_HOME; CAS
                        upload only, no Hub commit) — the same helper as scripts/bench_upload.py
  ratio                 mount_mb_s / hf_xet_mb_s (target >= 1.0: the mount uploads while the file is written)
  rewrite_mb_s          the identical content written again over the same path, until committed
  rewrite_xorb_bytes    xorb bytes the server stored for that rewrite (dedup: 0 expected)
  rewrite_dedup_bytes   chunk bytes the mount found already stored during the rewrite
  mount_peak_rss_mib    the mount daemon's peak RSS (VmHWM) over the write
  resave                a 288 MiB 3-shard safetensors model (one 8 MiB tensor changed, new shard boundaries)
                        uploaded after the old one, each client on its own fresh server with a fresh cache:
                        ``ideal_bytes`` = chunk bytes ``xetfs chunks`` finds in the new files but not the old;
                        ``<client>_new_over_ideal`` = xorb bytes the server stored / ideal for the mount
                        (target <= 1.25), ``xetfs upload`` (<= 1.25) and hf_xet with a fresh HF_HOME (<= 1.5)

Each client gets its own freshly started ``xetfs serve`` (one server would let the second client deduplicate
against the first). The clients alternate for ``--rounds`` rounds and the best time of each is kept.
Usage: scripts/bench_write.py [--size-mib 1024] [--rounds 1] [--keep DIR] [--no-resave]
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
sys.path.insert(0, str(ROOT / "scripts"))

from bench_upload import METRIC, hf_xet_upload, make_file  # noqa: E402

from xetfs.testing.models import ideal_bytes, model_tensors, save_sharded  # noqa: E402
from xetfs.testing.server import HF_CLIENT_ENV, running_server  # noqa: E402
from xetfs.testing.mount import mounted, wait_committed  # noqa: E402

MiB = 1024 * 1024


WRITE_BLOCK = 1 * MiB


def write_in_blocks(src: Path, dest: Path) -> None:
    """Copy with 1 MiB ``write()`` calls, as savers that write whole buffers (safetensors, torch.save) and ``cp`` do:
    the kernel hands the mount 1 MiB FUSE writes, where ``shutil.copyfile`` (``sendfile``) hands it 64 KiB ones."""
    buf = bytearray(WRITE_BLOCK)
    view = memoryview(buf)
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while n := fin.readinto(buf):
            fout.write(view[:n])


def timed_write(m, data: Path, dest: str, writer: str = "copyfile") -> tuple[float, float, dict]:
    """(seconds until close returned, seconds until committed, the mount's write counters)."""
    start = time.perf_counter()
    if writer == "copyfile":
        shutil.copyfile(data, m.path / dest)
    else:
        write_in_blocks(data, m.path / dest)
    closed = time.perf_counter() - start
    write = wait_committed(m, timeout_s=3600)
    return closed, time.perf_counter() - start, write


def mount_round(tmp: Path, data: Path, r: int, rewrite: bool, writer: str = "copyfile",
                extra_args: tuple[str, ...] = ()) -> dict:
    out: dict = {}
    with running_server(tmp / f"srv-mount-{r}") as srv:
        srv.create_repo("bench/mount")
        with mounted(srv, "bench/mount", tmp / f"mnt-{r}", cache_dir=tmp / f"cache-{r}",
                     args=["--memory-cache-size", "1G", *extra_args]) as m:
            out["closed_s"], out["committed_s"], first = timed_write(m, data, "random.bin", writer)
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


HF_UPLOAD_FOLDER = ("import sys; from huggingface_hub import HfApi; HfApi(endpoint=sys.argv[1], token=sys.argv[2])"
                    ".upload_folder(repo_id=sys.argv[3], folder_path=sys.argv[4], commit_message='save')")


def _cli_upload(srv, repo: str, folder: Path, cache: Path) -> None:
    subprocess.run([sys.executable, "-m", "xetfs.cli.main", "upload", repo, str(folder), "--endpoint", srv.url,
                    "--token", srv.token, "--cache-dir", str(cache), "--json"], check=True, capture_output=True,
                   cwd=ROOT)


def _hf_upload(srv, repo: str, folder: Path, home: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "HF_HOME": str(home / "hf"),
           **HF_CLIENT_ENV}
    subprocess.run([sys.executable, "-c", HF_UPLOAD_FOLDER, srv.url, srv.token, repo, str(folder)], env=env,
                   check=True, capture_output=True, cwd=ROOT)


def resave_round(tmp: Path) -> dict:
    """New xorb bytes / ideal of a re-saved model, for the mount, ``xetfs upload`` and hf_xet (fresh)."""
    old, new = tmp / "model-old", tmp / "model-new"
    save_sharded(old, model_tensors(changed=False), [12, 24])
    save_sharded(new, model_tensors(changed=True), [9, 22])
    ideal = ideal_bytes(old, new)
    out: dict = {"ideal_bytes": ideal}
    for client in ("mount", "xetfs_upload", "hf_xet"):
        with running_server(tmp / f"srv-resave-{client}") as srv:
            srv.create_repo("bench/model")
            if client == "hf_xet":
                _hf_upload(srv, "bench/model", old, tmp / "home-seed")
            else:
                _cli_upload(srv, "bench/model", old, tmp / "cache-seed")
            before = srv.metrics().get(METRIC, 0.0)
            if client == "mount":
                with mounted(srv, "bench/model", tmp / "mnt-resave", cache_dir=tmp / "cache-resave-mount") as m:
                    save_sharded(m.path, model_tensors(changed=True), [9, 22])
                    wait_committed(m, timeout_s=3600)
            elif client == "xetfs_upload":
                _cli_upload(srv, "bench/model", new, tmp / "cache-resave-upload")
            else:
                _hf_upload(srv, "bench/model", new, tmp / "home-resave")
            stored = srv.metrics().get(METRIC, 0.0) - before
        shutil.rmtree(tmp / f"srv-resave-{client}", ignore_errors=True)
        out[f"{client}_new_bytes"] = stored
        out[f"{client}_new_over_ideal"] = round(stored / ideal, 3)
    out["targets"] = {"mount": 1.25, "xetfs_upload": 1.25, "hf_xet": 1.5}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per client (best is kept)")
    parser.add_argument("--keep", type=Path, default=None, help="work directory to keep (default: temporary)")
    parser.add_argument("--no-resave", action="store_true", help="skip the re-saved model measurement")
    args = parser.parse_args()
    size = args.size_mib * MiB
    hf_times: list[float] = []
    rounds: list[dict] = []
    blocks: list[dict] = []    # the same write in 1 MiB write() calls
    cached: list[dict] = []    # copyfile into a mount with --writeback-cache
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
            blocks.append(mount_round(tmp, data, r, rewrite=False, writer="blocks"))
            cached.append(mount_round(tmp, data, r, rewrite=False, extra_args=("--writeback-cache",)))
        resave = None if args.no_resave else resave_round(tmp)
    mb = size / 1e6
    best = min(x["committed_s"] for x in rounds)
    last = rounds[-1]
    print(json.dumps({
        "size_bytes": size, "rounds": args.rounds,
        "mount_mb_s": round(mb / best, 1), "hf_xet_mb_s": round(mb / min(hf_times), 1),
        "ratio": round(min(hf_times) / best, 3), "target_ratio": 1.0,
        "mount_close_mb_s": round(mb / min(x["closed_s"] for x in rounds), 1),
        "mount_mb_s_all": [round(mb / x["committed_s"], 1) for x in rounds],
        "mount_1mib_writes_mb_s": round(mb / min(x["committed_s"] for x in blocks), 1),
        "ratio_1mib_writes": round(min(hf_times) / min(x["committed_s"] for x in blocks), 3),
        "mount_1mib_writes_close_mb_s": round(mb / min(x["closed_s"] for x in blocks), 1),
        "mount_1mib_writes_mb_s_all": [round(mb / x["committed_s"], 1) for x in blocks],
        "mount_writeback_cache_mb_s": round(mb / min(x["committed_s"] for x in cached), 1),
        "ratio_writeback_cache": round(min(hf_times) / min(x["committed_s"] for x in cached), 3),
        "mount_writeback_cache_mb_s_all": [round(mb / x["committed_s"], 1) for x in cached],
        "hf_xet_mb_s_all": [round(mb / t, 1) for t in hf_times],
        "mount_xorb_bytes": last["xorb_bytes"], "mount_peak_rss_mib": last["peak_rss_mib"],
        "rewrite_mb_s": round(mb / last["rewrite_s"], 1), "rewrite_xorb_bytes": last["rewrite_xorb_bytes"],
        "rewrite_dedup_bytes": last["rewrite_dedup_bytes"], "commits": last["commits"],
        "resave": resave,
    }))


if __name__ == "__main__":
    main()
