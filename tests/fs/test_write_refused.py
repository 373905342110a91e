"""Writes that fail or that the server refuses never reach the repo half done (real FUSE, real server).

- A write that hits ENOSPC (``--staging-size``) leaves the repo without that file, or with its previous
  content; a later clean rewrite of the same file is committed.
- A branch mount whose token cannot write mounts read-only, says so on the terminal, and writes get EROFS.
- A second writable mount of the same branch and cache dir fails with a clear message.
- Paths the Hub refused are listed by ``xetfs umount`` (exit 1) and retried by the next mount.
- A temp file renamed over its target counts as one pending file.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from xetfs.testing.hub import commit, delete_file, new_token
from xetfs.testing.mount import force_unmount, mounted, wait_committed, xetfs_cli
from xetfs.testing.server import make_bytes, running_server
from xetfs.testing.sync import wait_until

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1024 * 1024


def _tree(srv, repo: str) -> dict[str, int]:
    status, _, body = srv.request("GET", f"/api/models/{repo}/tree/main?recursive=true")
    assert status == 200, body
    return {e["path"]: e["size"] for e in json.loads(body) if e["type"] == "file"}


def _sha256(srv, repo: str, path: str) -> str:
    status, _, body = srv.request("GET", f"/api/models/{repo}/tree/main?recursive=true")
    assert status == 200, body
    return next(str(e["lfs"]["oid"]) for e in json.loads(body) if e["path"] == path)


def _upload(srv, repo: str, local: Path, dest: str) -> None:
    xetfs_cli("upload", repo, str(local), "--path-in-repo", dest, "--endpoint", srv.url,
              env={"XETFS_TOKEN": srv.token})


def test_a_write_that_hits_enospc_is_never_committed(tmp_path: Path) -> None:
    old = make_bytes("random", MiB, seed=1)
    (tmp_path / "keep.bin").write_bytes(old)
    with running_server(tmp_path / "server") as srv:
        srv.create_repo("org/full")
        _upload(srv, "org/full", tmp_path / "keep.bin", "keep.bin")
        with mounted(srv, "org/full", tmp_path / "mnt", args=["--staging-size", "4M"]) as m:
            for name in ("keep.bin", "new.bin", "empty.bin"):
                f = open(m.path / name, "wb")
                with pytest.raises(OSError) as info:
                    f.write(make_bytes("random", 8 * MiB, seed=2) if name != "empty.bin" else b"x" * (8 * MiB))
                    f.flush()
                assert info.value.errno == errno.ENOSPC
                try:
                    f.close()   # the buffered tail may fail again: either way the file was not finished
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
            write = wait_committed(m)
            assert write["pending_files"] == 0 and write["commits"] == 0, write
            assert _tree(srv, "org/full") == {"keep.bin": MiB}
            assert _sha256(srv, "org/full", "keep.bin") == hashlib.sha256(old).hexdigest()
            os.unlink(m.path / "new.bin")
            os.unlink(m.path / "empty.bin")
            (m.path / "keep.bin").write_bytes(b"a clean rewrite\n")   # closed cleanly: committed
            wait_committed(m)
        tree = _tree(srv, "org/full")
        assert tree == {"keep.bin": 16}, tree
        with mounted(srv, "org/full", tmp_path / "check") as m:
            assert (m.path / "keep.bin").read_bytes() == b"a clean rewrite\n"


def test_a_read_only_token_gives_erofs_and_refused_paths_commit_after_a_remount(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    with running_server(tmp_path / "server") as srv:
        srv.create_repo("org/ro")
        _upload(srv, "org/ro", tmp_path / "a.txt", "a.txt")
        read_only = new_token(srv, "read")
        mnt, cache = tmp_path / "ro", tmp_path / "ro-cache"
        mnt.mkdir()
        done = xetfs_cli("mount", "org/ro", str(mnt), "--endpoint", srv.url, "--cache-dir", str(cache),
                         env={"XETFS_TOKEN": read_only})
        try:
            assert "cannot write to org/ro" in done.stderr and "mounted read-only" in done.stderr, done.stderr
            assert json.loads((mnt / ".xetfs-stats").read_bytes())["writable"] is False
            for attempt in (lambda: open(mnt / "new.txt", "w"), lambda: open(mnt / "a.txt", "r+b"),
                            lambda: os.unlink(mnt / "a.txt")):
                with pytest.raises(OSError) as info:
                    attempt()
                assert info.value.errno == errno.EROFS
            assert (mnt / "a.txt").read_text() == "a\n"
        finally:
            umount = xetfs_cli("umount", str(mnt), check=False)
            force_unmount(mnt)
        assert umount.returncode == 0, umount.stderr

        cache = tmp_path / "rw-cache"
        with mounted(srv, "org/ro", tmp_path / "rw", cache_dir=cache) as m:
            second = xetfs_cli("mount", "org/ro", str(tmp_path / "ro"), "--endpoint", srv.url, "--cache-dir",
                               str(cache), env={"XETFS_TOKEN": srv.token}, check=False)
            assert second.returncode == 1 and "another writable mount of org/ro" in second.stderr, second.stderr
            assert not os.path.ismount(tmp_path / "ro")

            (tmp_path / "clash").write_text("a file\n")       # another client makes "clash" a file
            _upload(srv, "org/ro", tmp_path / "clash", "clash")
            (m.path / "clash").mkdir()
            (m.path / "clash" / "f.txt").write_text("refused while clash is a file\n")
            write = wait_committed(m)
            assert list(write["failed"]) == ["clash/f.txt"], write
            done = xetfs_cli("umount", str(m.path), "--upload-wait", "5", check=False)
            assert done.returncode == 1, done.stderr
            assert "1 paths are not committed" in done.stderr and "  clash/f.txt (failed: " in done.stderr
            assert not os.path.ismount(m.path)
        status, _, body = commit(srv, "org/ro", [delete_file("clash")])
        assert status == 200, body
        with mounted(srv, "org/ro", tmp_path / "rw", cache_dir=cache) as m:   # retried by the next mount
            write = wait_committed(m)
            assert write["failed"] == {} and write["commits"] == 1, write
        assert _tree(srv, "org/ro") == {"a.txt": 2, "clash/f.txt": 30}


def test_a_temp_file_renamed_over_its_target_counts_once(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}\n")
    with running_server(tmp_path / "server") as srv:
        srv.create_repo("org/tmp")
        _upload(srv, "org/tmp", tmp_path / "config.json", "config.json")
        with mounted(srv, "org/tmp", tmp_path / "mnt", args=["--upload-retry-max", "1"]) as m:
            srv.stop()                                       # nothing commits: the count is stable
            (m.path / "config.json.tmp").write_text('{"a": 1}\n')
            os.rename(m.path / "config.json.tmp", m.path / "config.json")
            (m.path / "new.json.tmp").write_text('{"b": 2}\n')
            os.rename(m.path / "new.json.tmp", m.path / "new.json")
            write = wait_until(lambda: m.stats()["write"], "the mount's counters")
            assert write["pending_files"] == 2 and write["pending_paths"] == ["config.json", "new.json"], write
            srv.start()
            write = wait_committed(m)
            assert write["pending_files"] == 0, write
        assert _tree(srv, "org/tmp") == {"config.json": 9, "new.json": 9}


def test_paths_a_revoked_token_could_not_commit_commit_after_a_remount_with_a_write_token(tmp_path: Path) -> None:
    """A write token revoked while the mount runs (``xetfs token revoke``): the close is refused at commit,
    the path is listed as failed by ``xetfs umount`` (exit 1), and the next mount with a token that can write
    commits it from the journal."""
    (tmp_path / "a.txt").write_text("a\n")
    with running_server(tmp_path / "server") as srv:
        srv.create_repo("org/rev")
        _upload(srv, "org/rev", tmp_path / "a.txt", "a.txt")
        writer = new_token(srv, "write", "org/rev")
        mnt, cache = tmp_path / "mnt", tmp_path / "cache"
        mnt.mkdir()
        xetfs_cli("mount", "org/rev", str(mnt), "--endpoint", srv.url, "--cache-dir", str(cache),
                  "--upload-retry-max", "1", env={"XETFS_TOKEN": writer})
        try:
            assert json.loads((mnt / ".xetfs-stats").read_bytes())["writable"] is True
            revoked = xetfs_cli("token", "revoke", "--data", str(srv.data_dir), writer)
            assert revoked.stdout.startswith("revoked token "), revoked.stdout
            (mnt / "b.txt").write_text("written after the revocation\n")
            write = wait_until(lambda: (w := json.loads((mnt / ".xetfs-stats").read_bytes())["write"])["failed"]
                               and w, "the refused commit")
            assert list(write["failed"]) == ["b.txt"], write
        finally:
            umount = xetfs_cli("umount", str(mnt), "--upload-wait", "5", check=False)
            force_unmount(mnt)
        assert umount.returncode == 1 and "  b.txt (failed: " in umount.stderr, umount.stderr
        assert _tree(srv, "org/rev") == {"a.txt": 2}
        assert xetfs_cli("token", "revoke", "--data", str(srv.data_dir), writer, check=False).returncode == 1

        with mounted(srv, "org/rev", tmp_path / "mnt2", cache_dir=cache) as m:    # the admin token can write
            write = wait_committed(m)
            assert write["failed"] == {} and write["commits"] == 1, write
        assert _tree(srv, "org/rev") == {"a.txt": 2, "b.txt": 29}
