"""Class 9, full disk: uploads answer 507 with a message that says the server is out of space, and the client
prints it. The data directory is a small tmpfs (mounted for the test, unmounted after)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from xetfs.testing.cas import build_file, cas_token
from xetfs.testing.server import make_bytes, running_server

MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_a_full_disk_is_507_with_a_clear_message_the_client_prints(small_disk: Path, tmp_path: Path) -> None:
    with running_server(small_disk / "data") as srv:
        srv.create_repo("org/full")
        f = build_file(size=4 * MiB, seed=301)
        status, _, body = srv.request("POST", f"/v1/xorbs/default/{f.xorb.hash}", f.xorb.data,
                                      token=cas_token(srv, "org/full"))
        assert status == 507, body
        assert "out of disk space" in json.loads(body)["error"]
        src = tmp_path / "src"
        src.mkdir()
        (src / "big.bin").write_bytes(make_bytes("random", 4 * MiB, 302))
        env = dict(os.environ, XETFS_ENDPOINT=srv.url, XETFS_TOKEN=srv.token)
        done = subprocess.run([sys.executable, "-m", "xetfs.cli.main", "upload", "org/full", str(src)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 1
        assert "507" in done.stderr and "out of disk space" in done.stderr, done.stderr
        assert srv.request("GET", "/health", token=None)[0] == 200
