"""Stream while writing: a file written front to back is uploaded before it is closed (real FUSE, real server).

A writer appends 512 MiB; while its file is still open, the server's counter of stored xorb bytes moves
(waited for, not timed). After close the file commits with the written bytes (sha256 checked on the
branch), and a file written out of order is uploaded at commit time instead, with the same result.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from xetfs.testing.mount import mounted, wait_committed
from xetfs.testing.server import running_server
from xetfs.testing.sync import wait_until

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1024 * 1024
XORB_BYTES = "xetfs_cas_xorb_upload_bytes_total"
BLOCK = 8 * MiB


def _block(i: int) -> bytes:
    return np.random.default_rng(i).integers(0, 256, BLOCK, dtype=np.uint8).tobytes()


def _lfs_oids(srv) -> dict[str, str]:
    status, _, body = srv.request("GET", "/api/models/org/stream/tree/main?recursive=true")
    assert status == 200, body
    return {e["path"]: e["lfs"]["oid"] for e in json.loads(body) if e.get("lfs")}


def test_a_sequential_writer_sees_xorbs_stored_before_it_closes(tmp_path: Path) -> None:
    with running_server(tmp_path / "server") as srv:
        srv.create_repo("org/stream")
        with mounted(srv, "org/stream", tmp_path / "mnt") as m:
            before = srv.metrics().get(XORB_BYTES, 0.0)
            sha = hashlib.sha256()
            with open(m.path / "big.bin", "wb") as f:
                for i in range(512 * MiB // BLOCK):
                    data = _block(i)
                    f.write(data)
                    sha.update(data)
                f.flush()
                stored = wait_until(lambda: srv.metrics().get(XORB_BYTES, 0.0) - before, "xorbs stored while open",
                                    timeout_s=300)
                assert stored > 0 and m.stats()["write"]["pending_files"] == 0
            write = wait_committed(m, timeout_s=600)
            assert write["commits"] == 1 and write["new_bytes"] == 512 * MiB, write

            sha_random = hashlib.sha256()                  # written out of order: uploaded at commit time
            fd = os.open(m.path / "random.bin", os.O_WRONLY | os.O_CREAT, 0o644)
            blocks = {i: _block(100 + i) for i in range(4)}
            for i in (2, 0, 3, 1):
                os.pwrite(fd, blocks[i], i * BLOCK)
            os.close(fd)
            for i in range(4):
                sha_random.update(blocks[i])
            wait_committed(m, timeout_s=600)
        assert _lfs_oids(srv) == {"big.bin": sha.hexdigest(), "random.bin": sha_random.hexdigest()}
