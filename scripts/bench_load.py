#!/usr/bin/env python3
"""Benchmark real loaders through the mount against baselines measured in the same run, on one server.

Prints one JSON object (times in seconds; every figure also as a ratio against its baseline). Every timed
step starts after ``os.sync()``, so no step pays for the writeback of the one before (the uploads, an
earlier download). (a), (c) and (e) time each side ``--rounds`` times (default 2) and compare the fastest
runs, as bench_write does: on this machine the first step after the uploads ran up to 1.6x slower than the
same step run again (fresh memory is expensive to touch first); every run is in the ``*_all`` lists.
  a_model_load:  a ~1 GiB model in 3 safetensors shards, every tensor loaded with ``safetensors.numpy``
                 (``load_file`` per shard, shards in turn) through a cold mount (fresh mount, fresh cache)
                 vs hf_xet ``snapshot_download`` followed by the same local load, and vs a local copy whose
                 pages were dropped.     ratio = mount / (download + load)      (target <= 1.0)
                 With torch and transformers installed (the ``bench`` extra) it adds ``from_pretrained``
                 of a Llama-shaped model plus a sum over every parameter, the same comparison
                 (``scripts/bench_load_hf.py``); without them that part says so.
  b_selective:   bytes fetched / bytes needed, each on a fresh mount and cache: one tensor (the worst of
                 ``--repeats``), a header-only ``safe_open(...).keys()``, one parquet column with pyarrow
                 (and polars / duckdb when installed).
  c_cold_seq:    cold sequential read of a 1 GiB file vs hf_xet ``hf_hub_download`` of it from the same
                 server.                 ratio = download s / mount s            (target >= 1.5)
  d_peak_rss:    peak RSS (VmHWM) of the mount daemon during (a).
  e_download:    ``xetfs download`` of the model repo vs ``snapshot_download``, each timed as a whole process
                 (interpreter start and imports included; ``snapshot_download_in_process_s`` leaves them out),
                 each started on a quiet disk (the other's output removed, ``os.sync()``); neither fsyncs.
                 ratio = snapshot_download s / xetfs download s                (target >= 1.0)

Usage: .venv/bin/python scripts/bench_load.py [--model-mib 1024] [--workdir DIR] [--repeats 10] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xetfs.testing.mount import FreshMount, xetfs_cli
from xetfs.testing.server import env_for_hf, running_server

import bench_load_hf  # scripts/, next to this file
from bench_mount import drop_page_cache

KiB = 1024
MiB = 1024 * KiB
SIZES = [64 * MiB, 4 * KiB, 16 * MiB, 4 * MiB, 48 * MiB, 12 * KiB, 16 * MiB, 4 * MiB, 64 * MiB, 256 * KiB,
         32 * MiB, 64 * MiB, 8 * KiB, 56 * MiB, 24 * MiB, 1 * MiB, 40 * MiB, 512 * KiB]


def make_model(root: Path, total_bytes: int) -> list[Path]:
    """3 shards written by safetensors, random float16 tensors from 4 KiB to 64 MiB, ~total_bytes in all."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(11)
    per_shard = total_bytes // 3
    shards = []
    for s in range(3):
        tensors, used, i = {}, 0, 0
        while used < per_shard:
            n = min(SIZES[(i + 5 * s) % len(SIZES)], max(4 * KiB, per_shard - used))
            tensors[f"layers.{s}.{i}.weight"] = np.frombuffer(rng.bytes(n - n % 2), dtype=np.float16)
            used += n
            i += 1
        path = root / f"model-{s + 1:05d}-of-00003.safetensors"
        save_file(tensors, str(path))
        shards.append(path)
    return shards


def make_parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(23)
    rows = 1_600_000
    table = pa.table({"id": rng.integers(0, 1 << 62, rows), "x": rng.standard_normal(rows),
                      "name": pa.array([f"n{v}" for v in rng.integers(0, 10**9, rows)]),
                      "flag": rng.integers(0, 2, rows) > 0})
    pq.write_table(table, str(path), row_group_size=rows // 8)


def load_all(paths: list[Path]) -> tuple[float, int]:
    """Seconds to load every tensor of every shard (in turn), and the bytes loaded."""
    from safetensors.numpy import load_file

    t = time.perf_counter()
    total = 0
    for p in paths:
        total += sum(a.nbytes for a in load_file(str(p)).values())
    return time.perf_counter() - t, total


def hf(server, tmp: Path, code: str, *args: str) -> float:
    """Run huggingface_hub code (``t`` = seconds it took, printed last) in a fresh process."""
    script = "import sys, time; from huggingface_hub import hf_hub_download, snapshot_download; " \
             "t = time.perf_counter(); " + code + "; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", script, *args], check=True, capture_output=True, text=True,
                         env=env_for_hf(tmp / "hf_home", server.url, server.token))
    return float(out.stdout.strip().splitlines()[-1])


def cold_mount(server, tmp: Path, repo: str, tag: str) -> FreshMount:
    """A fresh mount with a fresh cache, on a quiet disk: no writeback of an earlier step runs during this one
    (as for each hf run)."""
    return FreshMount(server, repo, tmp, tag, sync=True)


def bench_model(server, tmp: Path, shards: list[Path], model_mib: int, rounds: int) -> tuple[dict, dict]:
    names = [p.name for p in shards]
    mounts, downloads, locals_after, rss = [], [], [], 0
    for r in range(rounds):
        with cold_mount(server, tmp, "org/model", f"a{r}") as fresh:
            mounts.append(load_all([fresh.m.path / n for n in names]))
            mount_served = fresh.served()
            rss = max(rss, fresh.m.hwm_bytes())
        dl_dir = tmp / "snapshot"
        shutil.rmtree(dl_dir, ignore_errors=True)
        shutil.rmtree(tmp / "hf_home", ignore_errors=True)
        os.sync()
        downloads.append(hf(server, tmp, "snapshot_download('org/model', local_dir=sys.argv[1])", str(dl_dir)))
        locals_after.append(load_all([dl_dir / n for n in names])[0])
        shutil.rmtree(dl_dir, ignore_errors=True)
    (mount_s, loaded), download_s, local_after_download_s = min(mounts), min(downloads), min(locals_after)
    for p in shards:
        drop_page_cache(p)
    local_cold_s, _ = load_all(shards)
    model_bytes = sum(p.stat().st_size for p in shards)
    a = {"model_bytes": model_bytes, "tensor_bytes": loaded, "mount_s": mount_s,
         "download_s": download_s, "load_after_download_s": local_after_download_s,
         "local_cold_s": local_cold_s, "fetched_over_model": mount_served / model_bytes,
         "ratio": mount_s / (download_s + local_after_download_s), "target": 1.0,
         "ratio_vs_local_cold": mount_s / local_cold_s, "mount_s_all": [m for m, _ in mounts],
         "download_s_all": downloads, "load_after_download_s_all": locals_after}
    missing = bench_load_hf.available()
    a["from_pretrained"] = missing or bench_load_hf.bench_from_pretrained(
        server, tmp, model_mib, cold_mount, env_for_hf(tmp / "hf_home_fp", server.url, server.token))
    d = {"bytes": rss, "model_bytes": model_bytes, "ratio_to_model": rss / model_bytes}
    return a, d


def bench_selective(server, tmp: Path, shards: list[Path], parquet: Path, repeats: int) -> dict:
    from safetensors import safe_open

    shard = shards[1]
    with safe_open(str(shard), framework="np") as f:
        names = list(f.keys())
        name = names[len(names) // 2]
        nbytes = f.get_tensor(name).nbytes
    worst = 0.0
    for i in range(repeats):
        with cold_mount(server, tmp, "org/model", f"t{i}") as fresh:
            with safe_open(str(fresh.m.path / shard.name), framework="np") as f:
                f.get_tensor(name)
            worst = max(worst, fresh.served())
    header = 8 + struct.unpack("<Q", shard.read_bytes()[:8])[0]
    with cold_mount(server, tmp, "org/model", "h") as fresh:
        with safe_open(str(fresh.m.path / shard.name), framework="np") as f:
            list(f.keys())
        header_served = fresh.served()
    out: dict = {"tensor": {"tensor_bytes": nbytes, "worst_fetched": worst, "ratio": worst / nbytes,
                            "repeats": repeats, "bound": 1.1 + MiB / nbytes},
                 "header": {"header_bytes": header, "fetched": header_served, "ratio": header_served / header,
                            "bound": (header + MiB) / header}}
    import pyarrow.parquet as pq

    md = pq.ParquetFile(str(parquet)).metadata
    column = "x"
    idx = md.schema.names.index(column)
    need = sum(md.row_group(r).column(idx).total_compressed_size for r in range(md.num_row_groups))
    readers = {"pyarrow": lambda p: pq.read_table(str(p), columns=[column])}
    try:
        import polars as pl
        readers["polars"] = lambda p: pl.scan_parquet(str(p)).select(column).collect()
    except ImportError:
        out["polars"] = "skipped: not installed"
    try:
        import duckdb
        readers["duckdb"] = lambda p: duckdb.sql(f"select {column} from read_parquet('{p}')").fetchall()
    except ImportError:
        out["duckdb"] = "skipped: not installed"
    for label, read in readers.items():
        with cold_mount(server, tmp, "org/data", f"pq-{label}") as fresh:
            read(fresh.m.path / parquet.name)
            got = fresh.served()
        out[label] = {"column_bytes": need, "fetched": got, "ratio": got / need, "bound": 1.3 + MiB / need}
    return out


def bench_cold_seq(server, tmp: Path, big: Path, rounds: int) -> dict:
    downloads, mounts = [], []
    for r in range(rounds):
        shutil.rmtree(tmp / "hfdl", ignore_errors=True)
        os.sync()
        downloads.append(hf(server, tmp, "hf_hub_download('org/big', sys.argv[1], local_dir=sys.argv[2])",
                            big.name, str(tmp / "hfdl")))
        shutil.rmtree(tmp / "hfdl", ignore_errors=True)
        with cold_mount(server, tmp, "org/big", f"c{r}") as fresh:
            t = time.perf_counter()
            with open(fresh.m.path / big.name, "rb", buffering=0) as f:
                buf = bytearray(16 * MiB)
                while f.readinto(buf):
                    pass
            mounts.append(time.perf_counter() - t)
    size = big.stat().st_size
    download_s, mount_s = min(downloads), min(mounts)
    return {"file_bytes": size, "mount_GBps": size / mount_s / 1e9, "hf_xet_GBps": size / download_s / 1e9,
            "ratio": download_s / mount_s, "target": 1.5, "mount_s_all": mounts, "hf_xet_s_all": downloads}


def bench_download(server, tmp: Path, rounds: int) -> dict:
    """Each download starts on a quiet disk: the other's output removed and ``os.sync()`` done, so neither pays
    for the writeback of the one before it (``snapshot_download``'s 1 GiB used to be written out while
    ``xetfs download`` ran)."""
    def quiet() -> None:
        for d in ("snap2", "hf_home", "xdl"):
            shutil.rmtree(tmp / d, ignore_errors=True)
        os.sync()

    snaps, snaps_in_process, xetfs = [], [], []
    for r in range(rounds):
        quiet()
        t = time.perf_counter()
        snaps_in_process.append(hf(server, tmp, "snapshot_download('org/model', local_dir=sys.argv[1])",
                                   str(tmp / "snap2")))
        snaps.append(time.perf_counter() - t)   # the whole process, as for xetfs download: start-up counts
        quiet()
        t = time.perf_counter()
        xetfs_cli("download", "org/model", "--to", str(tmp / "xdl"), "--endpoint", server.url, "--token",
                  server.token)
        xetfs.append(time.perf_counter() - t)
    quiet()
    return {"xetfs_download_s": min(xetfs), "snapshot_download_s": min(snaps),
            "snapshot_download_in_process_s": min(snaps_in_process), "ratio": min(snaps) / min(xetfs),
            "target": 1.0, "xetfs_download_s_all": xetfs, "snapshot_download_s_all": snaps}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-mib", type=int, default=1024)
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2,
                    help="timed runs of each side of (a), (c) and (e); the fastest of each counts")
    ap.add_argument("--workdir", default=None,
                    help="keep the work files here (default: a temporary directory, removed at the end)")
    args = ap.parse_args()
    if args.workdir:                 # kept for a look afterwards
        return run(args, Path(args.workdir))
    with tempfile.TemporaryDirectory(prefix="xetfs-bench-load-") as tmp:   # several GB: removed at the end
        return run(args, Path(tmp))


def run(args: argparse.Namespace, tmp: Path) -> int:
    for sub in ("model", "data", "big"):
        shutil.rmtree(tmp / sub, ignore_errors=True)
        (tmp / sub).mkdir(parents=True)
    shards = make_model(tmp / "model", args.model_mib * MiB)
    parquet = tmp / "data" / "table.parquet"
    make_parquet(parquet)
    big = tmp / "big" / "big.bin"
    big.write_bytes(np.random.default_rng(1).bytes(args.big_mib * MiB))
    shutil.rmtree(tmp / "server", ignore_errors=True)
    out: dict = {}
    with running_server(tmp / "server") as server:
        for repo, sub in (("org/model", "model"), ("org/data", "data"), ("org/big", "big")):
            server.create_repo(repo)
            xetfs_cli("upload", repo, str(tmp / sub), "--endpoint", server.url, "--token", server.token)
        out["a_model_load"], out["d_peak_rss"] = bench_model(server, tmp, shards, args.model_mib, args.rounds)
        out["b_selective"] = bench_selective(server, tmp, shards, parquet, args.repeats)
        out["c_cold_seq"] = bench_cold_seq(server, tmp, big, args.rounds)
        out["e_download"] = bench_download(server, tmp, args.rounds)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
