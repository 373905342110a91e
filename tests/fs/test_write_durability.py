"""Acknowledged writes are never lost: server outages, a SIGKILLed mount, two mounts of one branch, conflicts.

Real FUSE mounts of a real ``xetfs serve``. Contents are checked through a fresh mount with another cache
dir (so nothing local can stand in for what the repo holds).
"""
from __future__ import annotations

import os
import signal
from types import SimpleNamespace
from pathlib import Path

import pytest

from xetfs.testing.proxy import GatedProxy
from xetfs.testing.server import ServerHandle, make_bytes, started
from xetfs.testing.sync import wait_until
from xetfs.testing.mount import force_unmount, mounted, seeded_server, tree_of, wait_committed, xetfs_cli

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1024 * 1024
COMMITS = "xetfs_hub_commits_total"


@pytest.fixture
def server(tmp_path: Path):
    files = {"notes.txt": b"first line\n", "weights.bin": make_bytes("random", 4 * MiB, seed=1)}
    with seeded_server(tmp_path, "org/d", files) as (srv, seed):
        yield srv, seed


def repo_contents(srv, tmp_path: Path, name: str) -> dict[str, bytes]:
    with mounted(srv, "org/d", tmp_path / name) as m:
        return tree_of(m.path)


def test_writes_while_the_server_is_down_are_committed_when_it_returns(server, tmp_path: Path) -> None:
    srv, seed = server
    expected = tree_of(seed)
    with mounted(srv, "org/d", tmp_path / "mnt", args=["--upload-retry-max", "1"]) as m:
        srv.stop()
        (m.path / "new.txt").write_text("written while the server was down\n")
        (m.path / "sub").mkdir()
        (m.path / "sub" / "big.bin").write_bytes(make_bytes("random", 3 * MiB, seed=2))
        with open(m.path / "weights.bin", "r+b") as f:      # copy-on-write: no fetch needed to write
            f.seek(MiB)
            f.write(b"\x01" * 5000)
        with open(m.path / "notes.txt", "a") as f:            # a regular file, appended to
            f.write("second line\n")
        os.rename(m.path / "new.txt", m.path / "renamed.txt")
        expected["renamed.txt"] = b"written while the server was down\n"
        expected["sub/big.bin"] = make_bytes("random", 3 * MiB, seed=2)
        w = bytearray(expected["weights.bin"])
        w[MiB:MiB + 5000] = b"\x01" * 5000
        expected["weights.bin"] = bytes(w)
        expected["notes.txt"] += b"second line\n"
        write = wait_until(lambda: (w := m.stats()["write"])["upload_errors"] >= 1 and w, "a failed upload")
        assert write["pending_files"] >= 4 and write["commits"] == 0, write
        assert (m.path / "renamed.txt").read_bytes() == expected["renamed.txt"]
        srv.start()
        write = wait_committed(m)
        assert write["conflicts"] == []
    assert repo_contents(srv, tmp_path, "check") == expected


def test_sigkilled_mount_resumes_its_upload_on_the_next_mount(server, tmp_path: Path) -> None:
    srv, seed = server
    data = make_bytes("random", 96 * MiB, seed=3)
    cache = tmp_path / "cache"
    commits_before = srv.metrics().get(COMMITS, 0.0)
    with GatedProxy(srv.port, hold_up=16 * MiB) as proxy:      # the upload stops after 16 of its 96 MiB
        via = SimpleNamespace(url=proxy.url, token=srv.token)
        with mounted(via, "org/d", tmp_path / "mnt", cache_dir=cache) as m:
            (m.path / "model.bin").write_bytes(data)   # close returned: durable locally
            proxy.wait_held()
            assert m.stats()["write"]["uploading"]
            os.kill(m.pid, signal.SIGKILL)
            force_unmount(m.path)
    assert srv.metrics().get(COMMITS, 0.0) == commits_before, "killed before its commit"
    with mounted(srv, "org/d", tmp_path / "mnt", cache_dir=cache) as m:
        assert (m.path / "model.bin").read_bytes() == data     # the journaled version is shown at once
        write = wait_committed(m)
        assert write["commits"] == 1
    got = repo_contents(srv, tmp_path, "check")
    assert got["model.bin"] == data and got["notes.txt"] == (seed / "notes.txt").read_bytes()


def test_two_mounts_of_one_branch_rebase_and_report_conflicts(server, tmp_path: Path) -> None:
    srv, seed = server
    with mounted(srv, "org/d", tmp_path / "a") as a, mounted(srv, "org/d", tmp_path / "b") as b:
        (a.path / "from-a.txt").write_text("a\n")
        (b.path / "from-b.bin").write_bytes(make_bytes("random", 2 * MiB, seed=4))
        wait_committed(a)
        wait_committed(b)                       # b's base moved: rebased onto a's commit
        (a.path / "notes.txt").write_text("a's version\n")
        wait_committed(a)
        (b.path / "notes.txt").write_text("b's version\n")
        write = wait_committed(b)
        assert write["conflicts"] == ["notes.txt"]
        assert (b.path / "notes.txt").read_text() == "b's version\n"    # kept locally, staged
        assert "CONFLICT" in b.logs()
    got = repo_contents(srv, tmp_path, "check")
    assert got["from-a.txt"] == b"a\n" and got["from-b.bin"] == make_bytes("random", 2 * MiB, seed=4)
    assert got["notes.txt"] == b"a's version\n"


def test_a_change_the_hub_refuses_is_isolated_shown_in_stats_and_retried_when_moved(server, tmp_path: Path) -> None:
    srv, seed = server
    with mounted(srv, "org/d", tmp_path / "mnt") as m:
        other = tmp_path / "other.txt"            # another client makes "clash" a file; this mount's view
        other.write_text("a file\n")              # (listed when it mounted) does not show it
        xetfs_cli("upload", "org/d", str(other), "--path-in-repo", "clash", "--endpoint", srv.url,
                  "--token", srv.token)
        (m.path / "clash").mkdir()
        (m.path / "clash" / "f.txt").write_text("refused: clash is a file on the branch\n")
        (m.path / "ok.txt").write_text("fine\n")
        write = wait_committed(m)
        assert list(write["failed"]) == ["clash/f.txt"], write
        assert "both a file and a folder" in write["failed"]["clash/f.txt"]
        assert write["pending_files"] == 0 and write["conflicts"] == []
        assert (m.path / "clash" / "f.txt").read_text() == "refused: clash is a file on the branch\n"
        os.rename(m.path / "clash" / "f.txt", m.path / "moved.txt")     # a new save or a move: tried again
        write = wait_committed(m)
        assert write["failed"] == {}, write
        assert m.logs().count("REFUSED") == 1, "logged once"
        endpoints = m.stats()["endpoints"]
        assert endpoints["urls"] == [srv.url] and endpoints["failovers"] == 0
    got = repo_contents(srv, tmp_path, "check")
    assert got["ok.txt"] == b"fine\n" and got["clash"] == b"a file\n"
    assert got["moved.txt"] == b"refused: clash is a file on the branch\n" and "clash/f.txt" not in got


def test_a_mount_whose_server_lost_its_data_clears_its_stale_shard_cache_and_commits(tmp_path: Path) -> None:
    """The mount's shard cache (per endpoint URL, under its cache dir) names xorbs a reset server behind the
    same URL no longer holds. The commit that deduplicated against it is refused (400); the mount clears the
    cache and commits again, with every byte uploaded."""
    data = make_bytes("random", 3 * MiB, seed=5)
    cache = tmp_path / "cache"
    with started(ServerHandle(tmp_path / "srv"), "xetfs serve") as srv:
        srv.create_repo("org/d")
        with mounted(srv, "org/d", tmp_path / "mnt", cache_dir=cache) as m:
            (m.path / "a.bin").write_bytes(data)
            assert wait_committed(m)["commits"] == 1
        assert list(cache.rglob("*.shard")), "the commit's shard is kept in the local shard cache"
        srv.restart_empty()                                # the same URL, none of the data
        srv.create_repo("org/d")
        with mounted(srv, "org/d", tmp_path / "mnt", cache_dir=cache) as m:
            (m.path / "b.bin").write_bytes(data)           # the same bytes: the cache names their xorbs
            write = wait_committed(m)
            assert write["commits"] == 1 and not write["conflicts"] and not write["failed"], write
            assert write["upload_errors"] == 0, "the upload went again within the commit, not as a failed one"
        assert repo_contents(srv, tmp_path, "check") == {"b.bin": data}
