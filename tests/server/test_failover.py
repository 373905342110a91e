"""Failover on real components (issue 6 must-show): two ``xetfs serve`` nodes over one SeaweedFS bucket and one
PostgreSQL database; the client is given both (``--endpoint A,B``).

- the node serving a ``xetfs download`` is SIGKILLed mid-transfer (``--proxy-reads``: the data bytes pass
  through it): the client moves to the other node and the file is byte-identical;
- the node serving a ``xetfs upload`` is SIGKILLed mid-upload: the upload completes through the other node
  and commits exactly once;
- the node serving a mount's read is SIGKILLed between two reads of one open file: the reads complete;
- SeaweedFS is stopped and started again under a mount (direct presigned reads): a read during the outage
  may fail with EIO, reads after it succeed and the mount stays up.

The node to kill is the one the client chose (its metrics show the traffic), so the tests do not depend on
which of two loopback nodes probes faster.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from xetfs.testing.server import ServerHandle, make_bytes
from xetfs.testing.mount import mounted, xetfs_cli
from xetfs.testing.services import PostgresHandle, SeaweedFSHandle, two_nodes
from xetfs.testing.deps import required

psycopg = required("psycopg")

MiB = 1024 * 1024
SERVED = "xetfs_cas_data_bytes_served_total"
RECONSTRUCTIONS = "xetfs_cas_reconstructions_total"
DEDUP_QUERIES = "xetfs_cas_dedup_queries_total"
COMMITS = "xetfs_hub_commits_total"

pytestmark = pytest.mark.timeout(300)
DEBUG = ["--debug"] if os.environ.get("XETFS_TEST_DEBUG") else []


def both(a: ServerHandle, b: ServerHandle) -> str:
    return f"{a.url},{b.url}"


def upload(node: ServerHandle, repo: str, *paths: Path) -> dict[str, object]:
    done = xetfs_cli("upload", repo, *map(str, paths), "--create-repo", "--json", "--endpoint", node.url,
                     env={"XETFS_TOKEN": node.token})
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def client(*args: str, token: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "xetfs.cli.main", *args, *DEBUG], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "XETFS_TOKEN": token})


def wait_for(cond: Callable[[], object], what: str, timeout_s: float = 60.0, proc: subprocess.Popen[str] | None = None
             ) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the client exited ({proc.returncode}) before {what}: {proc.communicate()}")
        time.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


def node_with(a: ServerHandle, b: ServerHandle, metric: str) -> ServerHandle | None:
    for node in (a, b):
        if node.metrics().get(metric, 0) > 0:
            return node
    return None


@contextmanager
def paused(proc: subprocess.Popen[str]) -> Iterator[None]:
    """The client stopped (SIGSTOP) for the block: nothing moves while its node is killed."""
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    return out


def test_download_moves_to_the_other_node_when_its_node_dies(weed: SeaweedFSHandle, pg: PostgresHandle,
                                                              tmp_path: Path) -> None:
    data = make_bytes("random", 64 * MiB, 61)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    with two_nodes(weed, pg, tmp_path, "--proxy-reads") as (a, b):
        upload(a, "t/dl", src)
        dest = tmp_path / "out"
        proc = client("download", "t/dl", "--to", str(dest), "--json", "--endpoint", both(a, b), token=a.token)
        serving = wait_for(lambda: node_with(a, b, SERVED), "the first data bytes", proc=proc)
        assert isinstance(serving, ServerHandle)
        with paused(proc):
            assert serving.metrics()[SERVED] < len(data), "killed mid-transfer"
            serving.kill()
        other = b if serving is a else a
        result = json.loads(finish(proc))
        assert result["bytes"] == len(data)
        assert (dest / "big.bin").read_bytes() == data
        assert other.metrics()[SERVED] > 0, "the rest came through the other node"


def test_upload_completes_through_the_other_node_and_commits_once(weed: SeaweedFSHandle,
                                                                  pg: PostgresHandle,
                                                                  tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = {f"part{i}.bin": make_bytes("random", 16 * MiB, 70 + i) for i in range(5)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    with two_nodes(weed, pg, tmp_path) as (a, b):
        a.create_repo("t/up")
        proc = client("upload", "t/up", str(src), "--json", "--endpoint", both(a, b), token=a.token)
        serving = wait_for(lambda: node_with(a, b, DEDUP_QUERIES), "the first CAS request", proc=proc)
        assert isinstance(serving, ServerHandle)
        with paused(proc):
            serving.kill()
        other = b if serving is a else a
        result = json.loads(finish(proc))
        assert result["files"] == len(files)
        assert other.metrics()[COMMITS] == 1, "the commit went through the live node, once"
        status, _, body = other.request("GET", "/api/models/t/up/commits/main")
        assert status == 200, body
        assert [c["id"] for c in json.loads(body)][0] == result["commit"] and len(json.loads(body)) == 2
        dest = tmp_path / "check"
        xetfs_cli("download", "t/up", "--to", str(dest), "--endpoint", other.url, env={"XETFS_TOKEN": a.token})
        for name, data in files.items():
            assert (dest / name).read_bytes() == data, name


def test_mount_reads_complete_when_their_node_dies(weed: SeaweedFSHandle, pg: PostgresHandle,
                                                   tmp_path: Path, fuse: None) -> None:
    data = make_bytes("random", 64 * MiB, 81)
    src = tmp_path / "weights.bin"
    src.write_bytes(data)
    with two_nodes(weed, pg, tmp_path, "--proxy-reads") as (a, b):
        upload(a, "t/mnt", src)
        nodes = SimpleNamespace(url=both(a, b), token=a.token)
        with mounted(nodes, "t/mnt", tmp_path / "mnt", args=["--read-only"]) as m:
            with open(m.path / "weights.bin", "rb", buffering=0) as f:
                head = f.read(4 * MiB)
                serving = node_with(a, b, SERVED)
                assert serving is not None
                serving.kill()
                rest = f.read()
            assert head + rest == data
            other = b if serving is a else a
            assert other.metrics()[SERVED] > 0, "the rest came through the other node"
            assert m.stats()["pid"] == m.pid, "the mount is up"


def test_reads_recover_after_the_object_store_restarts(weed: SeaweedFSHandle, pg: PostgresHandle,
                                                       tmp_path: Path, fuse: None) -> None:
    data = make_bytes("random", 32 * MiB, 91)
    src = tmp_path / "data.bin"
    src.write_bytes(data)
    with two_nodes(weed, pg, tmp_path) as (a, b):
        upload(a, "t/s3", src)
        nodes = SimpleNamespace(url=both(a, b), token=a.token)
        with mounted(nodes, "t/s3", tmp_path / "mnt", args=["--read-only", "--memory-cache-size", "64M"]) as m:
            fd = os.open(m.path / "data.bin", os.O_RDONLY)
            try:
                assert os.pread(fd, MiB, 0) == data[:MiB]
                outcome: list[object] = []
                weed.stop()
                try:
                    reader = threading.Thread(target=lambda: outcome.append(_pread(fd, MiB, 24 * MiB)))
                    reader.start()
                    time.sleep(1.0)       # the read is retrying against the stopped store
                finally:
                    weed.start()
                reader.join(180)
                got = outcome[0]
                assert got == data[24 * MiB:25 * MiB] or (isinstance(got, OSError) and got.errno == errno.EIO), got
                assert os.pread(fd, 8 * MiB, 28 * MiB) == data[28 * MiB:]
            finally:
                os.close(fd)
            assert (m.path / "data.bin").read_bytes() == data
            assert m.stats()["pid"] == m.pid, "the mount stayed up"
            assert a.metrics()[SERVED] == 0 and b.metrics()[SERVED] == 0, "direct reads from the store"


def _pread(fd: int, size: int, offset: int) -> bytes | OSError:
    try:
        return os.pread(fd, size, offset)
    except OSError as exc:
        return exc
