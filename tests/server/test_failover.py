"""Failover on real components: two ``xetfs serve`` nodes over one SeaweedFS bucket and one
PostgreSQL database; the client is given both (``--endpoint A,B``).

- the node serving a ``xetfs download`` is SIGKILLed mid-transfer (``--proxy-reads``: the data bytes pass
  through it): the client moves to the other node and the file is byte-identical;
- the node serving a ``xetfs upload`` is SIGKILLed mid-upload: the upload completes through the other node
  and commits exactly once;
- the node serving a mount's read is SIGKILLed between two reads of one open file: the reads complete;
- SeaweedFS is stopped and started again under a mount (direct presigned reads): a read during the outage
  fails with EIO once --read-timeout runs out, reads after it succeed and the mount stays up.

The client reaches each node through a ``GatedProxy`` that holds the traffic after a fixed number of bytes: the
node whose proxy holds first is the one the client chose, and it is killed while its transfer is provably
unfinished (the gate is closed), so the tests depend neither on timing nor on which node probes faster.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from xetfs.testing.server import ServerHandle, make_bytes
from xetfs.testing.mount import SERVED, mounted, xetfs_cli
from xetfs.testing.proxy import GatedProxy
from xetfs.testing.services import PostgresHandle, SeaweedFSHandle, two_nodes
from xetfs.testing.sync import wait_until
from xetfs.testing.deps import required

psycopg = required("psycopg")

MiB = 1024 * 1024
RECONSTRUCTIONS = "xetfs_cas_reconstructions_total"
COMMITS = "xetfs_hub_commits_total"

pytestmark = pytest.mark.timeout(300)
DEBUG = ["--debug"] if os.environ.get("XETFS_TEST_DEBUG") else []


@contextmanager
def gated(a: ServerHandle, b: ServerHandle, **hold: int) -> Iterator[tuple[GatedProxy, GatedProxy]]:
    """A gate in front of each node (``hold_up=`` / ``hold_down=`` bytes)."""
    with GatedProxy(a.port, **hold) as pa, GatedProxy(b.port, **hold) as pb:
        yield pa, pb


def kill_the_held(a: ServerHandle, b: ServerHandle, gates: tuple[GatedProxy, GatedProxy],
                  proc: subprocess.Popen[str] | None = None) -> tuple[ServerHandle, ServerHandle, GatedProxy]:
    """Wait for a gate to hold, SIGKILL the node behind it, open both gates -> (killed, other, its gate)."""
    wait_until(lambda: _client_alive(proc) and any(g.held.is_set() for g in gates), "a gate to hold", 120)
    held = 0 if gates[0].held.is_set() else 1
    serving, other = ((a, b), (b, a))[held]
    serving.kill()
    for g in gates:
        g.release()
    return serving, other, gates[held]


def _client_alive(proc: subprocess.Popen[str] | None) -> bool:
    if proc is not None and proc.poll() is not None:
        raise AssertionError(f"the client exited ({proc.returncode}) before the gate held: {proc.communicate()}")
    return True


def upload(node: ServerHandle, repo: str, *paths: Path) -> dict[str, object]:
    done = xetfs_cli("upload", repo, *map(str, paths), "--create-repo", "--json", "--endpoint", node.url,
                     env={"XETFS_TOKEN": node.token})
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def client(*args: str, token: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "xetfs.cli.main", *args, *DEBUG], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "XETFS_TOKEN": token})


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
        with gated(a, b, hold_down=8 * MiB) as gates:
            proc = client("download", "t/dl", "--to", str(dest), "--json", "--endpoint",
                          f"{gates[0].url},{gates[1].url}", token=a.token)
            serving, other, gate = kill_the_held(a, b, gates, proc)
            assert gate.moved["down"] < len(data), "killed mid-transfer"
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
        with gated(a, b, hold_up=8 * MiB) as gates:         # 8 of 80 MiB sent: the commit cannot have happened
            proc = client("upload", "t/up", str(src), "--json", "--endpoint", f"{gates[0].url},{gates[1].url}",
                          token=a.token)
            serving, other, _ = kill_the_held(a, b, gates, proc)
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
        with gated(a, b, hold_down=6 * MiB) as gates:
            nodes = SimpleNamespace(url=f"{gates[0].url},{gates[1].url}", token=a.token)
            with mounted(nodes, "t/mnt", tmp_path / "mnt", args=["--read-only"]) as m:
                with open(m.path / "weights.bin", "rb", buffering=0) as f:
                    with ThreadPoolExecutor(1) as pool:
                        head = pool.submit(f.read, 8 * MiB)          # held at 6 MiB, mid-read
                        serving, other, _ = kill_the_held(a, b, gates)
                        head_bytes = head.result(timeout=180)
                    rest = f.read()
                assert head_bytes + rest == data
                assert other.metrics()[SERVED] > 0, "the rest came through the other node"
                assert m.stats()["pid"] == m.pid, "the mount is up"


def test_reads_recover_after_the_object_store_restarts(weed: SeaweedFSHandle, pg: PostgresHandle,
                                                       tmp_path: Path, fuse: None) -> None:
    data = make_bytes("random", 32 * MiB, 91)
    src = tmp_path / "data.bin"
    src.write_bytes(data)
    with two_nodes(weed, pg, tmp_path) as (a, b):
        upload(a, "t/s3", src)
        nodes = SimpleNamespace(url=f"{a.url},{b.url}", token=a.token)
        args = ["--read-only", "--memory-cache-size", "64M", "--read-timeout", "10"]
        with mounted(nodes, "t/s3", tmp_path / "mnt", args=args) as m:
            fd = os.open(m.path / "data.bin", os.O_RDONLY)
            try:
                assert os.pread(fd, MiB, 0) == data[:MiB]
                weed.stop()
                try:
                    with pytest.raises(OSError) as info:         # retried until --read-timeout runs out
                        os.pread(fd, MiB, 24 * MiB)
                    assert info.value.errno == errno.EIO
                finally:
                    weed.start()
                assert os.pread(fd, MiB, 24 * MiB) == data[24 * MiB:25 * MiB]
                assert os.pread(fd, 8 * MiB, 28 * MiB) == data[28 * MiB:]
            finally:
                os.close(fd)
            assert (m.path / "data.bin").read_bytes() == data
            assert m.stats()["pid"] == m.pid, "the mount stayed up"
            assert a.metrics()[SERVED] == 0 and b.metrics()[SERVED] == 0, "direct reads from the store"
