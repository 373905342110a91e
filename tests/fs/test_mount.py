"""Real FUSE mounts of a real ``xetfs serve``: contents, concurrency, bytes served, caching.

One server and one repo per module (uploads cost time on 2 cores); each test mounts its own fresh mount so
the kernel page cache and the chunk cache start cold unless the test says otherwise. Files come from
``xetfs upload`` (``x/``) and from huggingface_hub + hf_xet (``hf/``).
"""
from __future__ import annotations

import filecmp
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from xetfs.testing.server import env_for_hf, make_bytes, running_server
from xetfs.testing.mount import mounted, served, xetfs_cli

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1024 * 1024
TENSOR = "b_target"
TENSOR_BYTES = 16 * MiB


def _safetensors(path: Path) -> None:
    """≥ 512 MiB: random neighbours around a random 16 MiB tensor, the rest zeros (cheap to upload)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(5)
    tensors = {f"zeros_{i}": np.zeros(64 * MiB, dtype=np.float32) for i in range(2)}   # 2 x 256 MiB
    tensors["a_before"] = rng.standard_normal(2 * MiB, dtype=np.float32)                     # 8 MiB
    tensors[TENSOR] = rng.standard_normal(TENSOR_BYTES // 4, dtype=np.float32)                # 16 MiB
    tensors["c_after"] = rng.standard_normal(2 * MiB, dtype=np.float32)
    save_file(tensors, str(path))


def _parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(9)
    n = 400_000
    table = pa.table({f"c{i}": rng.standard_normal(n) for i in range(8)})
    pq.write_table(table, str(path), row_group_size=100_000, compression="none")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("repo")
    src = tmp / "src"
    x = src / "x"
    (x / "deep" / "er").mkdir(parents=True)
    sizes = {"empty.bin": 0, "one.bin": 1, "small.bin": 4097, "deep/er/medium.bin": 3 * MiB + 17,
             "deep/odd.bin": 9 * MiB - 3}
    for i, (name, size) in enumerate(sizes.items()):
        (x / name).write_bytes(make_bytes("random", size, seed=i))
    (x / "README.md").write_text("a small text file that goes inline\n")
    (x / "big.bin").write_bytes(np.random.default_rng(1).bytes(200 * MiB))
    _safetensors(x / "model.safetensors")
    _parquet(x / "table.parquet")
    hf = src / "hf"
    hf.mkdir()
    (hf / "hf_weights.bin").write_bytes(make_bytes("float16", 7 * MiB + 5, seed=11))
    (hf / "hf_small.bin").write_bytes(make_bytes("random", 70_000, seed=12))
    (hf / "notes.txt").write_text("uploaded by huggingface_hub\n")
    with running_server(tmp / "server") as server:
        server.create_repo("org/demo")
        xetfs_cli("upload", "org/demo", str(x), "--path-in-repo", "x/", "--endpoint", server.url, "--token", server.token)
        script = ("import sys; from huggingface_hub import HfApi; "
                  "HfApi().upload_folder(repo_id='org/demo', folder_path=sys.argv[1], path_in_repo='hf')")
        subprocess.run([sys.executable, "-c", script, str(hf)], check=True, timeout=600,
                       env=env_for_hf(tmp / "hf_home", server.url, server.token))
        yield server, src


def _all_files(src: Path) -> dict[str, Path]:
    return {str(p.relative_to(src)): p for p in src.rglob("*") if p.is_file()}


def test_listing_stat_and_contents_match_the_source(repo, tmp_path: Path) -> None:
    server, src = repo
    with mounted(server, "org/demo", tmp_path / "mnt") as m:
        listed = subprocess.run(["find", str(m.path), "-type", "f"], capture_output=True, text=True, check=True)
        got = sorted(os.path.relpath(p, m.path) for p in listed.stdout.split())
        assert got == sorted(_all_files(src))
        subprocess.run(["ls", "-laR", str(m.path)], check=True, capture_output=True)
        for rel, path in _all_files(src).items():
            st = os.stat(m.path / rel)
            assert st.st_size == path.stat().st_size, rel
            assert filecmp.cmp(m.path / rel, path, shallow=False), rel
        assert subprocess.run(["cmp", str(m.path / "x/big.bin"), str(src / "x/big.bin")]).returncode == 0
        assert os.stat(m.path / "x").st_mode & 0o170000 == 0o040000
        stats = m.stats()
        assert stats["integrity_failures"] == 0 and stats["read_errors"] == 0
        assert stats["bytes_read"] >= (src / "x/big.bin").stat().st_size


def test_parallel_preads_and_mmap_faults_are_correct(repo, tmp_path: Path) -> None:
    server, src = repo
    big = (src / "x/big.bin").read_bytes()
    model = (src / "x/model.safetensors").read_bytes()
    random_start = 8 + int.from_bytes(model[:8], "little")   # a_before, b_target, c_after come first
    errors: list[str] = []
    with mounted(server, "org/demo", tmp_path / "mnt") as m:
        fd = os.open(m.path / "x/big.bin", os.O_RDONLY)

        def preads(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(40):
                off, n = rng.randrange(len(big)), rng.choice([1, 4096, 65536, 1 << 20])
                if os.pread(fd, n, off) != big[off:off + n]:
                    errors.append(f"pread {off}+{n}")

        def faults(seed: int) -> None:
            import mmap
            with open(m.path / "x/model.safetensors", "rb") as f, \
                    mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
                rng = random.Random(seed)
                for _ in range(60):
                    off = rng.randrange(random_start, random_start + 32 * MiB)
                    if mm[off:off + 4096] != model[off:off + 4096]:
                        errors.append(f"mmap {off}")

        threads = [threading.Thread(target=preads, args=(i,)) for i in range(16)]
        threads += [threading.Thread(target=faults, args=(100 + i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
        os.close(fd)
        assert not any(t.is_alive() for t in threads), "readers did not finish (deadlock?)"
        assert errors == []


def test_parquet_one_column_reads_a_fraction(repo, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    server, src = repo
    size = (src / "x/table.parquet").stat().st_size
    with mounted(server, "org/demo", tmp_path / "mnt") as m:
        before = served(server)
        got = pq.read_table(str(m.path / "x/table.parquet"), columns=["c3"])
        sent = served(server) - before
    assert got.equals(pq.read_table(str(src / "x/table.parquet"), columns=["c3"]))
    assert pq.ParquetFile(str(src / "x/table.parquet")).metadata.num_row_groups == 4
    assert sent < 0.4 * size, (sent, size)


def test_second_mount_sharing_the_cache_dir_fetches_nothing(repo, tmp_path: Path) -> None:
    server, src = repo
    cache = tmp_path / "cache"
    rel = "x/deep/odd.bin"
    with mounted(server, "org/demo", tmp_path / "a", cache_dir=cache) as a:
        assert (a.path / rel).read_bytes() == (src / rel).read_bytes()
        with mounted(server, "org/demo", tmp_path / "b", cache_dir=cache, args=["--read-only"]) as b:
            before = served(server)
            assert (b.path / rel).read_bytes() == (src / rel).read_bytes()
            assert served(server) == before
            assert b.stats()["cache"]["disk"]["hits"] > 0
    with mounted(server, "org/demo", tmp_path / "c", cache_dir=cache) as c:   # after a full remount too
        before = served(server)
        assert (c.path / rel).read_bytes() == (src / rel).read_bytes()
        assert served(server) == before


def test_stats_cli_prints_json(repo, tmp_path: Path) -> None:
    server, src = repo
    with mounted(server, "org/demo", tmp_path / "mnt") as m:
        (m.path / "x/deep/er/medium.bin").read_bytes()
        out = json.loads(xetfs_cli("stats", str(m.path)).stdout)
    for key in ("bytes_read", "bytes_fetched", "cache", "reconstructions", "retries", "integrity_failures",
                "pending"):
        assert key in out
    assert out["bytes_read"] >= 3 * MiB and out["bytes_fetched"] > 0


def test_umount_of_a_busy_mount_names_the_holders_and_lazy_detaches(repo, tmp_path: Path) -> None:
    from xetfs.osutil.process import pid_alive

    server, src = repo
    with mounted(server, "org/demo", tmp_path / "mnt") as m:
        fd = os.open(m.path / "x/small.bin", os.O_RDONLY)
        script = ("import mmap, sys, time; f = open(sys.argv[1], 'rb'); "
                  "m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ); f.close(); print(m[:1].hex(), flush=True); "
                  "sys.stdin.read()")
        child = subprocess.Popen([sys.executable, "-c", script, str(m.path / "x/deep/odd.bin")],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip()   # mapped (its fd is closed)
            busy = xetfs_cli("umount", str(m.path), "--upload-wait", "0", check=False)
            assert busy.returncode == 1
            assert "is busy" in busy.stderr and "--lazy" in busy.stderr, busy.stderr
            assert f"pid {os.getpid()} (" in busy.stderr and f"pid {child.pid} (" in busy.stderr, busy.stderr
            assert len(busy.stderr.strip().splitlines()) == 1
            assert os.path.ismount(m.path) and os.pread(fd, 4097, 0) == (src / "x/small.bin").read_bytes()
            lazy = xetfs_cli("umount", str(m.path), "--lazy", "--upload-wait", "0", check=False)
            assert lazy.returncode == 0, lazy.stderr
            assert not os.path.ismount(m.path)
            assert os.pread(fd, 4097, 0) == (src / "x/small.bin").read_bytes()   # open files still read
            assert pid_alive(m.pid)
        finally:
            os.close(fd)
            child.communicate("", timeout=60)
        deadline = time.monotonic() + 60
        while pid_alive(m.pid) and time.monotonic() < deadline:   # the last file closed: the daemon exits
            time.sleep(0.05)
        assert not pid_alive(m.pid)
