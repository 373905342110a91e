"""``xetfs mount --writeback-cache`` (docs/architecture.md, "Kernel writeback cache"; real FUSE, real server).

- The kernel gathers small writes: ``shutil.copyfile``'s 64 KiB pieces reach the daemon as far fewer, larger
  write requests, and the committed file is the copied one.
- A write into part of a page of a file not yet local makes the kernel read that page through the mount:
  the committed file holds the old bytes around the new ones.
- A full staging area fails the kernel's writeback, so the application sees ENOSPC at close (or fsync);
  the file is never committed, and a clean rewrite is.
"""
from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import BinaryIO

import pytest

from xetfs.testing.mount import mounted, uploaded_repo, wait_committed, xetfs_cli
from xetfs.testing.server import make_bytes, running_server
from xetfs.testing.sync import wait_until

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1024 * 1024
SENDFILE_PIECE = 64 * 1024   # what shutil.copyfile (sendfile) hands a FUSE file system per request


def _repo_file(srv, repo: str, path: str, tmp: Path) -> bytes:
    dest = tmp / "check"
    xetfs_cli("download", repo, path, "--to", str(dest), "--endpoint", srv.url, env={"XETFS_TOKEN": srv.token})
    return (dest / path).read_bytes()


def _weights(tmp: Path, seed: int) -> bytes:
    """A 3 MiB file ``weights.bin`` in ``tmp/src``; its bytes."""
    data = make_bytes("random", 3 * MiB, seed=seed)
    (tmp / "src").mkdir()
    (tmp / "src" / "weights.bin").write_bytes(data)
    return data


def _errnos(f: BinaryIO, offset: int, data: bytes) -> list[int]:
    """The errno of each call that failed: writing ``data`` at ``offset`` (and flushing), then the close."""
    errors = []
    try:
        f.seek(offset)
        f.write(data)
        f.flush()
    except OSError as exc:
        errors.append(exc.errno)
    try:
        f.close()
    except OSError as exc:
        errors.append(exc.errno)
    return errors


@pytest.mark.parametrize("cache", [False, True], ids=["default", "writeback-cache"])
def test_copyfile_reaches_the_daemon_in_larger_requests_with_the_writeback_cache(tmp_path: Path, cache: bool) -> None:
    data = make_bytes("random", 24 * MiB, seed=3)
    (tmp_path / "src.bin").write_bytes(data)
    with running_server(tmp_path / "server") as srv:
        srv.create_repo("org/wbc")
        args = ["--writeback-cache"] if cache else []
        with mounted(srv, "org/wbc", tmp_path / "mnt", args=args) as m:
            shutil.copyfile(tmp_path / "src.bin", m.path / "copy.bin")
            write = wait_committed(m)
            assert write["writeback_cache"] is cache and write["commits"] == 1, write
            assert write["bytes_written"] == len(data), write
            if cache:   # gathered by the kernel: at most a quarter of the requests copyfile makes
                assert write["write_requests"] <= len(data) // SENDFILE_PIECE // 4, write
            else:       # one request per sendfile piece
                assert write["write_requests"] == len(data) // SENDFILE_PIECE, write
        assert _repo_file(srv, "org/wbc", "copy.bin", tmp_path) == data


def test_a_write_into_part_of_a_page_reads_that_page_through_the_mount(tmp_path: Path) -> None:
    old = _weights(tmp_path, seed=4)
    with uploaded_repo(tmp_path, "org/part", tmp_path / "src") as srv:
        with mounted(srv, "org/part", tmp_path / "mnt", args=["--writeback-cache"]) as m:
            assert _errnos(open(m.path / "weights.bin", "r+b"), MiB + 100, b"\x01" * 5000) == []
            write = wait_committed(m)
            assert write["commits"] == 1 and write["bytes_written"] >= 5000, write
            expected = bytearray(old)
            expected[MiB + 100:MiB + 5100] = b"\x01" * 5000
            assert (m.path / "weights.bin").read_bytes() == expected
        assert _repo_file(srv, "org/part", "weights.bin", tmp_path) == expected


def test_a_full_staging_area_fails_the_close_and_nothing_is_committed(tmp_path: Path) -> None:
    with running_server(tmp_path / "server") as srv:
        srv.create_repo("org/full")
        with mounted(srv, "org/full", tmp_path / "mnt", args=["--writeback-cache", "--staging-size", "4M"]) as m:
            errors = _errnos(open(m.path / "big.bin", "wb"), 0, make_bytes("random", 8 * MiB, seed=2))
            assert errors and set(errors) == {errno.ENOSPC}, errors
            write = wait_committed(m)
            assert write["commits"] == 0 and write["pending_files"] == 0, write
            (m.path / "big.bin").write_bytes(b"a clean rewrite\n")   # its release comes after close returns
            wait_until(lambda: m.stats()["write"]["commits"] == 1, "the clean rewrite committed")
        assert _repo_file(srv, "org/full", "big.bin", tmp_path) == b"a clean rewrite\n"


def test_a_write_into_part_of_a_page_fails_at_close_while_the_server_is_unreachable(tmp_path: Path) -> None:
    """The kernel must read the page first; with the server down that read fails, so the write does: EIO at
    close, no byte of it staged, and the repo keeps the file as it was."""
    old = _weights(tmp_path, seed=5)
    with uploaded_repo(tmp_path, "org/off", tmp_path / "src") as srv:
        with mounted(srv, "org/off", tmp_path / "mnt", args=["--writeback-cache", "--read-timeout", "5"]) as m:
            srv.stop()
            errors = _errnos(open(m.path / "weights.bin", "r+b"), MiB + 100, b"\x01" * 5000)
            assert errors and set(errors) == {errno.EIO}, errors
            assert m.stats()["write"]["bytes_written"] == 0
            srv.start()
            write = wait_committed(m)
            assert write["commits"] == 0, write
        assert _repo_file(srv, "org/off", "weights.bin", tmp_path) == old
