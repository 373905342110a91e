"""``xetfs prefetch`` and ``xetfs cache`` with real mounts of a real ``xetfs serve``: a prefetched, pinned 256 MiB
file reads through a mount started with the server stopped, byte-exact, nothing fetched; a pinned file survives
the eviction pressure of a mount with a small --cache-size; a bundle exported, imported into an empty cache dir,
serves an offline mount; prefetch runs alongside a mount of the same cache dir."""
from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from xetfs.testing.files import pread, write_tree
from xetfs.testing.mount import mounted, seeded_server, xetfs_cli
from xetfs.testing.server import ServerHandle, make_bytes
from xetfs.testing.sync import wait_until

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1024 * 1024
CONFIG = b'{"model_type": "demo", "hidden_size": 8}\n'      # a regular (non-Xet) file


def _seed(srv: ServerHandle, repo: str, tmp_path: Path, files: dict[str, bytes]) -> None:
    srv.create_repo(repo)
    write_tree(tmp_path / "seed", files)
    xetfs_cli("upload", repo, str(tmp_path / "seed"), "--endpoint", srv.url, "--token", srv.token)


def _prefetch(srv: ServerHandle, repo: str, cache: Path, *args: str) -> dict[str, int]:
    done = xetfs_cli("prefetch", repo, *args, "--cache-dir", str(cache), "--json", "--endpoint", srv.url,
                     "--token", srv.token)
    return dict(json.loads(done.stdout))


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MiB):
            h.update(block)
    return h.hexdigest()


def test_a_prefetched_pinned_256_mib_file_reads_with_the_server_stopped_and_nothing_fetched(tmp_path: Path) -> None:
    data = make_bytes("random", 256 * MiB, 5)
    want = hashlib.sha256(data).hexdigest()
    cache = tmp_path / "cache"
    with seeded_server(tmp_path, "org/big", {"big.bin": data, "config.json": CONFIG}) as (srv, _):
        del data
        out = _prefetch(srv, "org/big", cache, "--pin")
        assert (out["files"], out["bytes"], out["pinned"], out["regular_files"]) == (1, 256 * MiB, 1, 1)
        srv.stop()
        with mounted(srv, "org/big", tmp_path / "mnt", cache_dir=cache, args=["--memory-cache-size", "64M"]) as m:
            assert m.stderr.startswith("xetfs: OFFLINE"), m.stderr
            assert _sha256_of(m.path / "big.bin") == want
            assert (m.path / "config.json").read_bytes() == CONFIG
            stats = json.loads(xetfs_cli("stats", str(m.path)).stdout)
            assert stats["link"]["state"] == "offline"
            assert stats["bytes_fetched"] == 0 and stats["reconstructions"] == 0
            assert stats["bytes_read"] >= 256 * MiB


def test_a_pinned_file_survives_the_eviction_pressure_of_a_small_cache(server: ServerHandle, tmp_path: Path) -> None:
    files = {"pinned.bin": make_bytes("random", 8 * MiB, 1), "o1.bin": make_bytes("random", 12 * MiB, 2),
             "o2.bin": make_bytes("random", 12 * MiB, 3)}
    _seed(server, "org/pressure", tmp_path, files)
    cache = tmp_path / "cache"
    _prefetch(server, "org/pressure", cache, "pinned.bin", "--pin")
    with mounted(server, "org/pressure", tmp_path / "mnt", cache_dir=cache, args=["--cache-size", "10M"]) as m:
        for name in ("o1.bin", "o2.bin"):
            assert (m.path / name).read_bytes() == files[name]
        stats = m.stats()
        assert stats["cache"]["disk"]["evictions"] > 0 and stats["bytes_fetched"] >= 24 * MiB
    listed = json.loads(xetfs_cli("cache", "ls", "--cache-dir", str(cache), "--json").stdout)
    cached = {f["path"]: (f["cached_bytes"], f["pinned"]) for f in listed[0]["files"]}
    assert cached["pinned.bin"] == (8 * MiB, True)
    assert cached["o1.bin"][0] < 12 * MiB                       # the pressure was real: unpinned bytes went
    with mounted(server, "org/pressure", tmp_path / "mnt", cache_dir=cache, args=["--cache-size", "10M"]) as m:
        assert (m.path / "pinned.bin").read_bytes() == files["pinned.bin"]
        assert m.stats()["bytes_fetched"] == 0


def test_an_exported_bundle_imported_into_an_empty_cache_dir_serves_an_offline_mount(tmp_path: Path) -> None:
    files = {"model.safetensors": make_bytes("random", 6 * MiB, 7), "sub/data.bin": make_bytes("random", 3 * MiB, 8),
             "config.json": CONFIG}
    warm, bundle, fresh = tmp_path / "warm", tmp_path / "rev.tar", tmp_path / "fresh"
    with seeded_server(tmp_path, "org/bundle", files) as (srv, _):
        _prefetch(srv, "org/bundle", warm)
        srv.stop()
        xetfs_cli("cache", "export", "org/bundle", "-o", str(bundle), "--cache-dir", str(warm))
        xetfs_cli("cache", "import", str(bundle), "--cache-dir", str(fresh))
        with mounted(srv, "org/bundle", tmp_path / "mnt", cache_dir=fresh) as m:
            assert m.stderr.startswith("xetfs: OFFLINE"), m.stderr
            assert sorted(os.listdir(m.path)) == ["config.json", "model.safetensors", "sub"]
            for name, data in files.items():
                assert (m.path / name).read_bytes() == data
            stats = m.stats()
            assert stats["bytes_fetched"] == 0 and stats["reconstructions"] == 0


def test_prefetch_alongside_a_running_mount_and_their_layouts_merge(server: ServerHandle, tmp_path: Path) -> None:
    """The mount learns part of a file, prefetch stores all of it meanwhile, then the mount learns more and saves
    its layout again: the stored layout stays whole (merged under the lock, not overwritten)."""
    files = {"a.bin": make_bytes("random", 8 * MiB, 11), "b.bin": make_bytes("random", 4 * MiB, 12)}
    _seed(server, "org/shared", tmp_path, files)
    cache = tmp_path / "cache"
    with mounted(server, "org/shared", tmp_path / "mnt", cache_dir=cache) as m:
        assert pread(m.path / "a.bin", 0, MiB) == files["a.bin"][:MiB]
        wait_until(lambda: list((cache / "layouts").rglob("*.layout")), "the mount's layout of a.bin")
        out = _prefetch(server, "org/shared", cache)
        assert out["files"] == 2 and 0 < out["fetched_bytes"] < 12 * MiB
        before = m.stats()["bytes_fetched"]
        assert pread(m.path / "a.bin", 5 * MiB, 256 * 1024) == files["a.bin"][5 * MiB:5 * MiB + 256 * 1024]
        assert (m.path / "b.bin").read_bytes() == files["b.bin"]
        assert m.stats()["bytes_fetched"] == before     # served from what prefetch stored
    listed = json.loads(xetfs_cli("cache", "ls", "--cache-dir", str(cache), "--json").stdout)
    assert {f["path"]: f["cached_bytes"] for f in listed[0]["files"]} == {"a.bin": 8 * MiB, "b.bin": 4 * MiB}
    assert json.loads(xetfs_cli("cache", "verify", "--cache-dir", str(cache), "--json").stdout)["bad"] == []


def test_a_regular_file_a_mount_read_is_kept_in_the_cache_dir_and_served_offline(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with seeded_server(tmp_path, "org/regular", {"config.json": CONFIG, "README.md": b"# unread\n"}) as (srv, _):
        with mounted(srv, "org/regular", tmp_path / "mnt", cache_dir=cache) as m:
            assert (m.path / "config.json").read_bytes() == CONFIG
        srv.stop()
        with mounted(srv, "org/regular", tmp_path / "mnt", cache_dir=cache) as m:
            assert m.stderr.startswith("xetfs: OFFLINE"), m.stderr
            assert (m.path / "config.json").read_bytes() == CONFIG
            with pytest.raises(OSError) as caught:
                (m.path / "README.md").read_bytes()
            assert caught.value.errno == errno.EIO


def test_cache_clear_under_a_running_mount(server: ServerHandle, tmp_path: Path) -> None:
    files = {"a.bin": make_bytes("random", 3 * MiB, 21), "b.bin": make_bytes("random", 3 * MiB, 22)}
    _seed(server, "org/cleared", tmp_path, files)
    cache = tmp_path / "cache"
    with mounted(server, "org/cleared", tmp_path / "mnt", cache_dir=cache) as m:
        assert (m.path / "a.bin").read_bytes() == files["a.bin"]
        cleared = json.loads(xetfs_cli("cache", "clear", "--cache-dir", str(cache), "--json").stdout)
        assert cleared["freed_bytes"] >= 3 * MiB and not (cache / "chunks").exists()
        assert (m.path / "b.bin").read_bytes() == files["b.bin"]     # the mount keeps caching after a clear
        assert pread(m.path / "a.bin", MiB, 4096) == files["a.bin"][MiB:MiB + 4096]
    assert sum(p.stat().st_size for p in (cache / "chunks").rglob("*-*")) >= 3 * MiB
    assert json.loads(xetfs_cli("cache", "verify", "--cache-dir", str(cache), "--json").stdout)["bad"] == []
