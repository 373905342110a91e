"""Writable mounts of a branch, end to end: real FUSE, real ``xetfs serve``, real huggingface_hub + hf_xet.

Every operation is applied to the mount AND to a plain local directory (the reference); after the writeback
committed, the repo must hold exactly the reference: through a fresh mount (another cache dir) and through
``huggingface_hub.snapshot_download`` (Xet files fetched by hf_xet).
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from xetfs.testing.server import make_bytes
from xetfs.testing.mount import mounted, seeded_server, tree_of, wait_committed

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1024 * 1024


def dirs_of(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}


def both(roots: tuple[Path, Path], op: Callable[[Path], object]) -> None:
    for root in roots:
        op(root)


def vim_save(path: Path, data: bytes) -> None:
    """What vim does with backupcopy=no: write a temp file, fsync it, rename it over the original."""
    tmp = path.with_name(path.name + ".swp-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def overwrite_at(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def truncate(path: Path, size: int) -> None:
    os.truncate(path, size)


@pytest.fixture
def server(tmp_path: Path):
    files = {"config.txt": b"lr = 0.1\n", "weights.bin": make_bytes("random", 6 * MiB, seed=1),
             "old/keep.bin": make_bytes("random", 100_000, seed=2)}
    with seeded_server(tmp_path, "org/w", files) as (srv, seed):
        yield srv, seed


def test_editing_patterns_survive_remount_and_official_clients(server, tmp_path: Path) -> None:
    srv, seed = server
    ref = tmp_path / "ref"
    shutil.copytree(seed, ref)
    src = tmp_path / "tree"   # cp -r source: 200 small files and a few large ones
    for i in range(200):
        (src / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 7}" / f"f{i}.txt").write_bytes(make_bytes("text", 50 + i * 37, seed=i))
    for i in range(3):
        (src / f"large{i}.bin").write_bytes(make_bytes("random", 5 * MiB + i, seed=100 + i))
    with mounted(srv, "org/w", tmp_path / "mnt") as m:
        roots = (m.path, ref)
        both(roots, lambda r: vim_save(r / "config.txt", b"lr = 0.02\nepochs = 3\n"))
        both(roots, lambda r: subprocess.run(["cp", "-r", str(src), str(r / "data")], check=True))
        both(roots, lambda r: overwrite_at(r / "weights.bin", 3 * MiB, b"\xab" * 70_000))
        both(roots, lambda r: append(r / "data" / "large0.bin", b"appended tail"))
        both(roots, lambda r: truncate(r / "data" / "large1.bin", 2 * MiB + 5))
        both(roots, lambda r: os.rename(r / "data" / "d3", r / "moved-d3"))
        both(roots, lambda r: os.rename(r / "old" / "keep.bin", r / "kept.bin"))
        both(roots, lambda r: os.rmdir(r / "old"))
        both(roots, lambda r: (r / "data" / "d0" / "f0.txt").unlink())
        both(roots, lambda r: os.mkdir(r / "empty"))
        both(roots, lambda r: os.rmdir(r / "empty"))
        assert tree_of(m.path) == tree_of(ref)          # the mount reads back what was written
        assert os.stat(m.path / "data" / "large1.bin").st_size == 2 * MiB + 5
        write = wait_committed(m)
        assert write["conflicts"] == [] and write["upload_errors"] == 0
        assert write["commits"] <= 8, f"closes close together share commits: {write}"
        assert tree_of(m.path) == tree_of(ref)          # and still does once committed
    with mounted(srv, "org/w", tmp_path / "mnt2") as m:
        assert tree_of(m.path) == tree_of(ref)
        assert dirs_of(m.path) == dirs_of(ref)
    from huggingface_hub import snapshot_download

    snap = Path(snapshot_download("org/w", endpoint=srv.url, token=srv.token, cache_dir=tmp_path / "snap"))
    got = {k: v for k, v in tree_of(snap).items() if not k.startswith(".")}
    assert got == tree_of(ref)


def test_new_files_download_with_hf_xet(server, tmp_path: Path) -> None:
    srv, _ = server
    data = make_bytes("float16", 9 * MiB + 3, seed=7)
    with mounted(srv, "org/w", tmp_path / "mnt") as m:
        (m.path / "new").mkdir()
        (m.path / "new" / "weights.bin").write_bytes(data)
        wait_committed(m)
    from huggingface_hub import HfApi, hf_hub_download

    (entry,) = HfApi(endpoint=srv.url, token=srv.token).get_paths_info("org/w", ["new/weights.bin"])
    assert entry.xet_hash and entry.lfs.size == len(data)
    path = hf_hub_download("org/w", "new/weights.bin", endpoint=srv.url, token=srv.token,
                           cache_dir=tmp_path / "dl")
    assert Path(path).read_bytes() == data


def test_read_only_mounts_refuse_writes(server, tmp_path: Path) -> None:
    srv, _ = server
    from huggingface_hub import HfApi

    sha = HfApi(endpoint=srv.url, token=srv.token).repo_info("org/w").sha
    for args, revision in ((["--read-only"], None), ([], sha)):
        with mounted(srv, "org/w", tmp_path / f"mnt-{revision}", args=args, revision=revision) as m:
            assert m.stats()["writable"] is False
            for attempt in (lambda: open(m.path / "new.txt", "w"), lambda: open(m.path / "config.txt", "r+b"),
                            lambda: os.mkdir(m.path / "d"), lambda: os.unlink(m.path / "config.txt"),
                            lambda: os.rename(m.path / "config.txt", m.path / "c2.txt")):
                with pytest.raises(OSError) as info:
                    attempt()
                assert info.value.errno == errno.EROFS
            assert (m.path / "config.txt").read_text() == "lr = 0.1\n"
            with open(m.path / "config.txt", "rb") as f:   # fsync of a file opened for reading succeeds
                os.fsync(f.fileno())


def test_full_staging_area_gives_enospc(server, tmp_path: Path) -> None:
    srv, _ = server
    with mounted(srv, "org/w", tmp_path / "mnt", args=["--staging-size", "1M"]) as m:
        with pytest.raises(OSError) as info:
            with open(m.path / "big.bin", "wb") as f:
                f.write(make_bytes("random", 2 * MiB, seed=3))
        assert info.value.errno == errno.ENOSPC
        os.unlink(m.path / "big.bin")                    # frees its staged bytes
        (m.path / "small.txt").write_text("fits\n")     # the mount stays usable
        wait_committed(m)
        assert (m.path / "small.txt").read_text() == "fits\n"
