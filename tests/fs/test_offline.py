"""Offline start and degraded running (docs/architecture.md, "Offline mode"), on real FUSE and a real server:

- a repo is mounted and some files read, the mount stopped, the server stopped: the next mount comes up
  offline from the cache dir (one notice line), serves the read files byte-exact with nothing fetched, an
  unread file gives EIO at once (small regular files alike: those read before come from the cache dir);
  after the server restarts (same data, same port) the unread file becomes readable without a remount;
- with no snapshot in the cache dir the server's error stands; a refusal (401) is never taken for "offline";
- a server that goes away under a running mount: after the first failures the mount is degraded, reads of
  uncached files fail at once, cached files are served, and it comes back by itself;
- a writable mount started offline takes writes into staging and commits them once the server is back.
"""
from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from xetfs.testing.files import pread, pread_unless_eio, read_past_page_cache
from xetfs.testing.mount import mounted, seeded_server, wait_committed, xetfs_cli
from xetfs.testing.server import make_bytes
from xetfs.testing.sync import wait_until

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1024 * 1024
FILES = {"read.bin": make_bytes("random", 3 * MiB, 1), "sub/also-read.bin": make_bytes("float16", 2 * MiB, 2),
         "unread.bin": make_bytes("random", 2 * MiB + 17, 3), "config.json": b'{"model_type": "offline"}\n',
         "README.md": b"# never read before the server went away\n"}


def eio_within(path: Path, bound_s: float) -> float:
    """Open and read ``path``: it must fail with EIO; returns how long that took (checked against ``bound_s``)."""
    start = time.monotonic()
    with pytest.raises(OSError) as caught:
        pread(path, 0, 4096)
    took = time.monotonic() - start
    assert caught.value.errno == errno.EIO, caught.value
    assert took < bound_s, f"EIO after {took:.2f}s, not within {bound_s}s"
    return took


def test_offline_start_serves_what_was_read_and_reconnects_when_the_server_returns(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with seeded_server(tmp_path, "org/offline", FILES) as (srv, _):
        with mounted(srv, "org/offline", tmp_path / "mnt", cache_dir=cache) as m:
            assert m.stats()["link"]["state"] == "online" and not m.stderr
            assert (m.path / "read.bin").read_bytes() == FILES["read.bin"]
            assert (m.path / "sub/also-read.bin").read_bytes() == FILES["sub/also-read.bin"]
            assert (m.path / "config.json").read_bytes() == FILES["config.json"]     # a regular (non-Xet) file
        # a refusal is an answer: with a snapshot in the cache dir, a bad token still fails the mount
        denied = xetfs_cli("mount", "org/offline", str(tmp_path / "mnt"), "--endpoint", srv.url,
                           "--cache-dir", str(cache), env={"XETFS_TOKEN": "not-a-token"}, check=False)
        assert denied.returncode == 1 and "OFFLINE" not in denied.stderr, denied.stderr
        srv.stop()

        with mounted(srv, "org/offline", tmp_path / "mnt", cache_dir=cache) as m:
            lines = m.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("xetfs: OFFLINE:"), m.stderr
            link = m.stats()["link"]
            assert link["state"] == "offline" and link["reconnects"] == 0, link
            assert sorted(os.listdir(m.path)) == ["README.md", "config.json", "read.bin", "sub", "unread.bin"]
            assert (m.path / "unread.bin").stat().st_size == len(FILES["unread.bin"])
            assert (m.path / "read.bin").read_bytes() == FILES["read.bin"]
            assert (m.path / "sub/also-read.bin").read_bytes() == FILES["sub/also-read.bin"]
            assert (m.path / "config.json").read_bytes() == FILES["config.json"]     # from the regular-file store
            eio_within(m.path / "unread.bin", 1.0)
            eio_within(m.path / "README.md", 1.0)
            stats = m.stats()
            assert stats["bytes_fetched"] == 0 and stats["integrity_failures"] == 0, stats

            srv.start()                                  # same data dir, same port
            size = len(FILES["unread.bin"])
            got = wait_until(lambda: pread_unless_eio(m.path / "unread.bin", 0, size), "the unread file readable")
            assert got == FILES["unread.bin"]
            assert (m.path / "README.md").read_bytes() == FILES["README.md"]
            link = m.stats()["link"]
            assert link["state"] == "online" and link["reconnects"] == 1, link
            assert m.stats()["bytes_fetched"] > 0


def test_without_a_snapshot_the_unreachable_server_is_the_error(tmp_path: Path) -> None:
    with seeded_server(tmp_path, "org/nosnap", {"a.bin": make_bytes("random", 1000, 4)}) as (srv, _):
        srv.stop()
        (tmp_path / "mnt").mkdir()
        done = xetfs_cli("mount", "org/nosnap", str(tmp_path / "mnt"), "--endpoint", srv.url,
                         "--cache-dir", str(tmp_path / "empty-cache"), env={"XETFS_TOKEN": srv.token}, check=False)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot reach" in lines[0] and "OFFLINE" not in lines[0], done.stderr
        assert not os.path.ismount(tmp_path / "mnt")


def test_a_server_lost_while_mounted_degrades_the_mount_and_comes_back(tmp_path: Path) -> None:
    files = {**FILES, "later.bin": make_bytes("random", 1 * MiB, 5)}
    with seeded_server(tmp_path, "org/degrade", files) as (srv, _):
        with mounted(srv, "org/degrade", tmp_path / "mnt", cache_dir=tmp_path / "cache", args=["--read-only"]) as m:
            assert read_past_page_cache(m.path / "read.bin") == files["read.bin"]
            srv.stop()
            # the first read that needs the server fails after the first connection failures, not the timeout
            with pytest.raises(OSError) as caught:
                pread(m.path / "unread.bin", 0, 4096)
            assert caught.value.errno == errno.EIO
            link = m.stats()["link"]
            assert link["state"] == "degraded" and link["degraded_switches"] == 1, link
            assert link["failures_in_row"] >= 3 and link["last_error"], link
            eio_within(m.path / "later.bin", 1.0)            # then at once
            before = m.stats()["bytes_read"]
            assert read_past_page_cache(m.path / "read.bin") == files["read.bin"]   # cached bytes: still served
            assert m.stats()["bytes_read"] - before == len(files["read.bin"])

            srv.start()
            size = len(files["later.bin"])
            got = wait_until(lambda: pread_unless_eio(m.path / "later.bin", 0, size), "later.bin readable again")
            assert got == files["later.bin"]
            assert (m.path / "unread.bin").read_bytes() == files["unread.bin"]
            link = m.stats()["link"]
            assert link["state"] == "online" and link["reconnects"] == 1, link


def test_a_writable_mount_started_offline_stages_writes_and_commits_them_later(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    new = make_bytes("random", 1 * MiB + 3, 6)
    with seeded_server(tmp_path, "org/offline-rw", FILES) as (srv, _):
        with mounted(srv, "org/offline-rw", tmp_path / "mnt", cache_dir=cache) as m:
            assert (m.path / "read.bin").read_bytes() == FILES["read.bin"]
        srv.stop()
        with mounted(srv, "org/offline-rw", tmp_path / "mnt", cache_dir=cache, args=["--upload-retry-max", "1"]) as m:
            assert "writes are staged" in m.stderr, m.stderr
            (m.path / "new.bin").write_bytes(new)           # staged: close returns once it is on local disk
            assert (m.path / "new.bin").read_bytes() == new
            assert m.stats()["write"]["pending_files"] == 1
            srv.start()
            write = wait_committed(m)
            assert write["commits"] == 1 and write["pending_files"] == 0, write
        status, _, body = srv.request("GET", "/org/offline-rw/resolve/main/new.bin")
        assert status == 200 and body == new
