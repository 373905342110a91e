"""What users of ``xetfs mount`` rely on, end to end on real FUSE and a real ``xetfs serve``:

- ``xetfs umount --upload-wait`` running out leaves the change journaled; the next mount uploads it;
- revisions other than ``main``: a writable non-main branch (its commits land on it, not on main), a commit
  sha (read-only), and a dataset repo's branch;
- ``--cache-size`` bounds the disk tier while a larger file is read, and the bytes stay right;
- ``--commit-delay``: closes within the delay share one commit;
- ``--read-timeout`` turns a read that hangs (the server holds its answer) into EIO long before the default.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from xetfs.osutil.process import pid_alive
from xetfs.testing.files import pread
from xetfs.testing.mount import mounted, tree_of, wait_committed, xetfs_cli
from xetfs.testing.proxy import GatedProxy
from xetfs.testing.server import ServerHandle, make_bytes, running_server
from xetfs.testing.sync import wait_until

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1024 * 1024


def upload(srv: ServerHandle, repo: str, src: Path, *args: str) -> None:
    xetfs_cli("upload", repo, str(src), *args, env={"XETFS_ENDPOINT": srv.url, "XETFS_TOKEN": srv.token})


def resolve(srv: ServerHandle, repo: str, rev: str, path: str, kind: str = "") -> bytes | None:
    """The file's bytes at ``rev`` through the Hub's resolve route (None when it is not there)."""
    status, _, body = srv.request("GET", f"/{kind}{repo}/resolve/{rev}/{path}")
    assert status in (200, 404), (status, body)
    return body if status == 200 else None


def history(srv: ServerHandle, repo: str, rev: str = "main", kind: str = "models") -> list[str]:
    status, _, body = srv.request("GET", f"/api/{kind}/{repo}/commits/{rev}")
    assert status == 200, body
    return [c["id"] for c in json.loads(body)]


def create_branch(srv: ServerHandle, repo: str, branch: str, kind: str = "models") -> None:
    status, _, body = srv.request("POST", f"/api/{kind}/{repo}/branch/{branch}", b"{}",
                                  {"Content-Type": "application/json"})
    assert status == 200, body


def test_upload_wait_running_out_leaves_the_change_journaled_for_the_next_mount(tmp_path: Path) -> None:
    data = make_bytes("random", 3 * MiB, 11)
    cache = tmp_path / "cache"
    with running_server(tmp_path / "server") as srv:
        srv.create_repo("org/replay")
        base = history(srv, "org/replay")
        with mounted(srv, "org/replay", tmp_path / "mnt", cache_dir=cache, args=["--upload-retry-max", "1"]) as m:
            srv.stop()
            (m.path / "model.bin").write_bytes(data)            # durable locally once close returns
            wait_until(lambda: m.stats()["write"]["upload_errors"] >= 1, "a failed upload")
            done = xetfs_cli("umount", str(m.path), "--upload-wait", "1", check=False)
            assert done.returncode == 1, done.stderr                # unmounted, but not everything committed
            assert "1 paths are not committed" in done.stderr and "  model.bin (pending)" in done.stderr, done.stderr
            assert not os.path.ismount(m.path)
        srv.start()
        assert history(srv, "org/replay") == base, "nothing was committed"
        with mounted(srv, "org/replay", tmp_path / "mnt", cache_dir=cache) as m:
            assert (m.path / "model.bin").read_bytes() == data      # the journal is shown at once
            write = wait_committed(m)
            assert write["commits"] == 1 and write["pending_files"] == 0, write
        assert len(history(srv, "org/replay")) == len(base) + 1
        assert resolve(srv, "org/replay", "main", "model.bin") == data


def test_a_writable_non_main_branch_and_a_read_only_commit(server: ServerHandle, repo: str, tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "a.txt").write_bytes(b"v1\n")
    (tmp_path / "v1" / "w.bin").write_bytes(make_bytes("float32", 2 * MiB, 12))
    upload(server, repo, tmp_path / "v1")
    main_history = history(server, repo)
    v1 = main_history[0]
    create_branch(server, repo, "dev")
    (tmp_path / "dev.txt").write_bytes(b"on dev\n")
    upload(server, repo, tmp_path / "dev.txt", "--path-in-repo", "a.txt", "--revision", "dev")
    with mounted(server, repo, tmp_path / "dev", revision="dev") as m:
        assert m.stats()["writable"] is True
        assert (m.path / "a.txt").read_bytes() == b"on dev\n"
        assert (m.path / "w.bin").read_bytes() == (tmp_path / "v1" / "w.bin").read_bytes()
        (m.path / "new.txt").write_bytes(b"written on dev\n")
        assert wait_committed(m)["commits"] == 1
    assert resolve(server, repo, "dev", "new.txt") == b"written on dev\n"
    assert resolve(server, repo, "main", "new.txt") is None and resolve(server, repo, "main", "a.txt") == b"v1\n"
    assert history(server, repo) == main_history, "main did not move"
    with mounted(server, repo, tmp_path / "sha", revision=v1) as m:
        assert m.stats()["writable"] is False and m.stats()["commit"] == v1
        assert tree_of(m.path) == tree_of(tmp_path / "v1")
        with pytest.raises(OSError) as info:
            (m.path / "x.txt").write_bytes(b"x")
        assert info.value.errno == errno.EROFS


def test_a_dataset_repo_on_a_branch(server: ServerHandle, tmp_path: Path) -> None:
    repo = "org/lifecycle-dataset"
    server.create_repo(repo, repo_type="dataset")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.csv").write_bytes(b"x,y\n1,2\n")
    upload(server, f"datasets/{repo}", tmp_path / "src")
    create_branch(server, repo, "v2", kind="datasets")
    part = make_bytes("random", 3 * MiB, 13)
    (tmp_path / "part.bin").write_bytes(part)
    upload(server, f"datasets/{repo}", tmp_path / "part.bin", "--path-in-repo", "data/part.bin", "--revision", "v2")
    with mounted(server, f"datasets/{repo}", tmp_path / "mnt", revision="v2") as m:
        assert tree_of(m.path) == {"train.csv": b"x,y\n1,2\n", "data/part.bin": part}
        (m.path / "data" / "more.csv").write_bytes(b"3,4\n")
        assert wait_committed(m)["commits"] == 1
    assert resolve(server, repo, "v2", "data/more.csv", kind="datasets/") == b"3,4\n"
    assert resolve(server, repo, "main", "data/part.bin", kind="datasets/") is None
    with mounted(server, f"datasets/{repo}", tmp_path / "main") as m:
        assert tree_of(m.path) == {"train.csv": b"x,y\n1,2\n"}


def test_cache_size_bounds_the_disk_tier(server: ServerHandle, repo: str, tmp_path: Path) -> None:
    bound = 16 * MiB
    data = make_bytes("random", 64 * MiB, 14)
    (tmp_path / "big.bin").write_bytes(data)
    upload(server, repo, tmp_path / "big.bin")
    cache = tmp_path / "cache"

    def disk_bytes() -> int:
        return sum(p.stat().st_size for tier in ("chunks", "layouts") for p in (cache / tier).rglob("*")
                   if p.is_file())

    args = ["--cache-size", "16M", "--memory-cache-size", "4M"]
    with mounted(server, repo, tmp_path / "mnt", cache_dir=cache, args=args) as m:
        with open(m.path / "big.bin", "rb", buffering=0) as f:
            for off in range(0, len(data), 4 * MiB):
                assert f.read(4 * MiB) == data[off:off + 4 * MiB]
        assert m.stats()["cache"]["disk"]["evictions"] >= 1, "64 MiB went through a 16 MiB tier"
    # At rest (the daemon has exited, so every disk write and the eviction after it are done). While it runs,
    # an entry is written first and the oldest ones are evicted right after, so a sample then may see one
    # entry more: the bound is asserted where it is a promise.
    assert 0 < disk_bytes() <= bound
    with mounted(server, repo, tmp_path / "again", cache_dir=cache, args=args) as m:
        assert pread(m.path / "big.bin", len(data) - MiB, MiB) == data[-MiB:]
        assert m.stats()["bytes_fetched"] == 0, "the newest entries (the file's end) were kept and read back"
        assert (m.path / "big.bin").read_bytes() == data
    assert 0 < disk_bytes() <= bound


def test_closes_within_the_commit_delay_share_one_commit(server: ServerHandle, repo: str, tmp_path: Path) -> None:
    base = history(server, repo)
    files = {f"f{i}.txt": f"file {i}\n".encode() for i in range(5)}
    with mounted(server, repo, tmp_path / "mnt", args=["--commit-delay", "10"]) as m:
        for name, data in files.items():
            (m.path / name).write_bytes(data)
        write = wait_committed(m)
        assert write["commits"] == 1 and write["files_committed"] == len(files), write
    assert len(history(server, repo)) == len(base) + 1
    assert {name: resolve(server, repo, "main", name) for name in files} == files


def test_read_timeout_turns_a_hung_read_into_eio(server: ServerHandle, repo: str, tmp_path: Path) -> None:
    data = make_bytes("random", 8 * MiB, 15)
    (tmp_path / "w.bin").write_bytes(data)
    upload(server, repo, tmp_path / "w.bin")
    with GatedProxy(server.port) as gate:
        via = SimpleNamespace(url=gate.url, token=server.token)
        with mounted(via, repo, tmp_path / "mnt", args=["--read-only", "--read-timeout", "3"]) as m:
            gate.hold("down")                      # the server takes requests and never answers
            start = time.monotonic()
            with pytest.raises(OSError) as info:
                pread(m.path / "w.bin", 0, 4096)
            assert info.value.errno == errno.EIO
            assert time.monotonic() - start < 60, "did not wait for the default --read-timeout (120 s)"
            assert os.path.ismount(m.path)
            gate.release()
            assert pread(m.path / "w.bin", 5 * MiB, 4096) == data[5 * MiB:5 * MiB + 4096]


def test_the_kit_fails_a_block_whose_umount_fails(server: ServerHandle, repo: str, tmp_path: Path) -> None:
    """xetfs.testing.mount.mounted: a busy mount makes ``xetfs umount`` fail, and that fails the block (the
    mount is then removed by force, so nothing is left behind)."""
    (tmp_path / "a.txt").write_bytes(b"a\n")
    upload(server, repo, tmp_path / "a.txt")
    mnt = tmp_path / "mnt"
    with pytest.raises(AssertionError, match="xetfs umount .* failed"):
        with mounted(server, repo, mnt, args=["--read-only"]) as m:
            busy = open(m.path / "a.txt", "rb")        # noqa: SIM115 - held open across the unmount on purpose
    with contextlib.suppress(OSError):               # ENOTCONN: its daemon was killed by the clean-up
        busy.close()
    assert not os.path.ismount(mnt) and not pid_alive(m.pid)
