"""A mounted branch follows its head (xetfs.fs.follow, docs/architecture.md "Following a branch"), against a real
``xetfs serve`` and real FUSE mounts, commits pushed with huggingface_hub:

- a reader that holds a file open while two commits land reads only the revision it opened;
- a new open sees the new content within two polls; a file deleted upstream vanishes from ``ls`` (and from
  the kernel's entry cache); an unchanged file keeps its inode;
- a tag or a commit mount never polls (no byte goes to the server after it is ready).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from xetfs.client.config import parse_repo
from xetfs.read.snapshot import load_snapshot
from xetfs.testing.deps import required
from xetfs.testing.mount import Mount, mounted, wait_committed
from xetfs.testing.proxy import GatedProxy
from xetfs.testing.server import make_bytes, running_server
from xetfs.testing.sync import wait_until

required("huggingface_hub")
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi  # noqa: E402

MiB = 1024 * 1024
REPO = "t/follow"
pytestmark = pytest.mark.usefixtures("hf_client_env")


def _follow(m: Mount) -> dict[str, Any]:
    follow = m.stats()["follow"]
    assert isinstance(follow, dict)
    return follow


def _reads(path: Path, expected: bytes) -> bool:
    try:
        return path.read_bytes() == expected
    except FileNotFoundError:
        return False


def _shows_within_two_polls(m: Mount, path: Path, expected: bytes) -> None:
    """The check that swaps the new head in is at most the second one after the commit landed."""
    before = _follow(m)["checks"]
    wait_until(lambda: _reads(path, expected), f"{path.name} to show the new commit", timeout_s=30)
    assert _follow(m)["last_change_check"] <= before + 2


@pytest.mark.parametrize("mode", ["writable", "read-only"])
def test_a_reader_keeps_its_revision_while_two_commits_land(tmp_path: Path, mode: str) -> None:
    v1, v2, v3 = (make_bytes("float32", n * MiB, seed) for n, seed in ((8, 1), (6, 2), (7, 3)))
    with running_server(tmp_path / "srv") as srv:
        api = HfApi(endpoint=srv.url, token=srv.token)
        api.create_repo(REPO)
        api.create_commit(REPO, [CommitOperationAdd("w.bin", v1), CommitOperationAdd("gone.txt", b"bye\n"),
                                 CommitOperationAdd("keep/k.txt", b"kept\n")], commit_message="one")
        args = ["--poll-interval", "1", *(["--read-only"] if mode == "read-only" else [])]
        with mounted(srv, REPO, tmp_path / "m", args=args) as m:
            w, gone, kept = m.path / "w.bin", m.path / "gone.txt", m.path / "keep" / "k.txt"
            kept_ino = kept.stat().st_ino
            assert gone.read_bytes() == b"bye\n"                  # the kernel now caches its entry
            with open(w, "rb", buffering=0) as reader1:
                got1 = reader1.read(MiB)
                api.upload_file(path_or_fileobj=v2, path_in_repo="w.bin", repo_id=REPO)
                _shows_within_two_polls(m, w, v2)
                assert w.stat().st_size == len(v2)
                with open(w, "rb", buffering=0) as reader2:
                    got2 = reader2.read(MiB)
                    api.create_commit(REPO, [CommitOperationAdd("w.bin", v3), CommitOperationDelete("gone.txt")],
                                      commit_message="three")
                    _shows_within_two_polls(m, w, v3)
                    assert "gone.txt" not in os.listdir(m.path)
                    assert not gone.exists()
                    got1 += reader1.read()
                    got2 += reader2.read()
            assert got1 == v1                                      # every byte from the commit it opened
            assert got2 == v2
            assert w.stat().st_size == len(v3)
            assert kept.stat().st_ino == kept_ino and kept.read_bytes() == b"kept\n"
            dates = {c.title: int(c.created_at.timestamp()) for c in api.list_repo_commits(REPO)}
            assert (int(w.stat().st_mtime), int(kept.stat().st_mtime)) == (dates["three"], dates["one"])
            head = api.list_repo_refs(REPO).branches[0].target_commit
            follow = _follow(m)
            assert (m.stats()["commit"], follow["commit"], follow["changes"]) == (head, head, 2)
            assert follow["last_checked"] is not None and follow["failures"] == 0
            snapshot = load_snapshot(m.cache_dir, parse_repo(REPO, None, "main"))   # for an offline start
            assert snapshot is not None and snapshot.commit == head


def test_a_tag_or_a_commit_mount_never_polls(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv") as srv:
        api = HfApi(endpoint=srv.url, token=srv.token)
        api.create_repo(REPO)
        sha = api.upload_file(path_or_fileobj=b"one\n", path_in_repo="a.txt", repo_id=REPO).oid
        api.create_tag(REPO, tag="v1")
        args = ["--poll-interval", "1"]
        with GatedProxy(srv.port) as proxy, \
                mounted(proxy, REPO, tmp_path / "tag", token=srv.token, revision="v1", args=args) as tag, \
                mounted(proxy, REPO, tmp_path / "sha", token=srv.token, revision=sha, args=args) as pinned, \
                mounted(srv, REPO, tmp_path / "branch", args=args) as branch:
            sent = proxy.moved["up"]
            assert tag.stats()["follow"] is None and pinned.stats()["follow"] is None
            wait_until(lambda: _follow(branch)["checks"] >= 3, "three checks of the branch's head")
            assert proxy.moved["up"] == sent                       # not one byte from the pinned mounts
            assert (tag.path / "a.txt").read_bytes() == b"one\n"


def test_a_writable_mount_follows_and_its_saves_apply_to_what_it_shows(tmp_path: Path) -> None:
    """The view moves to the upstream commit and the writeback's base with it: saving the file the upstream
    commit changed is no conflict, and the branch gets the saved bytes; the mount then shows its own commit."""
    with running_server(tmp_path / "srv") as srv:
        api = HfApi(endpoint=srv.url, token=srv.token)
        api.create_repo(REPO)
        api.upload_file(path_or_fileobj=b"v1\n", path_in_repo="a.txt", repo_id=REPO)
        with mounted(srv, REPO, tmp_path / "m", args=["--poll-interval", "1", "--commit-delay", "0"]) as m:
            a = m.path / "a.txt"
            api.upload_file(path_or_fileobj=b"v2 upstream\n", path_in_repo="a.txt", repo_id=REPO)
            wait_until(lambda: _reads(a, b"v2 upstream\n"), "the upstream commit to show", timeout_s=30)
            a.write_bytes(b"v3 saved here\n")
            write = wait_committed(m)
            assert (write["conflicts"], write["commits"]) == ([], 1)
            head = api.list_repo_refs(REPO).branches[0].target_commit
            assert head == write["last_commit"]
            assert Path(api.hf_hub_download(REPO, "a.txt", cache_dir=tmp_path / "dl")).read_bytes() == b"v3 saved here\n"
            wait_until(lambda: _follow(m)["commit"] == head, "the mount to show its own commit", timeout_s=30)
            assert a.read_bytes() == b"v3 saved here\n" and m.stats()["commit"] == head


def test_a_writable_mount_with_a_change_in_progress_waits_then_follows(tmp_path: Path) -> None:
    """While a file is being written the view keeps its commit (the head is shown as waiting); once the
    change is committed (rebased over the upstream commit) the view moves to the branch's head."""
    with running_server(tmp_path / "srv") as srv:
        api = HfApi(endpoint=srv.url, token=srv.token)
        api.create_repo(REPO)
        api.upload_file(path_or_fileobj=b"a1\n", path_in_repo="a.txt", repo_id=REPO)
        with mounted(srv, REPO, tmp_path / "m", args=["--poll-interval", "1", "--commit-delay", "0"]) as m:
            a = m.path / "a.txt"
            with open(m.path / "b.txt", "wb") as writer:
                writer.write(b"b, written here\n")
                upstream = api.upload_file(path_or_fileobj=b"a2 upstream\n", path_in_repo="a.txt",
                                           repo_id=REPO).oid
                wait_until(lambda: _follow(m)["waiting_head"] == upstream, "the new head to wait", timeout_s=30)
                assert a.read_bytes() == b"a1\n"
            write = wait_committed(m)
            assert (write["conflicts"], write["commits"]) == ([], 1)
            head = api.list_repo_refs(REPO).branches[0].target_commit
            wait_until(lambda: _follow(m)["commit"] == head, "the view to move to the head", timeout_s=30)
            assert (a.read_bytes(), (m.path / "b.txt").read_bytes()) == (b"a2 upstream\n", b"b, written here\n")
            assert _follow(m)["waiting_head"] is None


def test_a_pull_request_mount_follows_the_pull_request(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv") as srv:
        api = HfApi(endpoint=srv.url, token=srv.token)
        api.create_repo(REPO)
        api.upload_file(path_or_fileobj=b"main\n", path_in_repo="a.txt", repo_id=REPO)
        pr = api.upload_file(path_or_fileobj=b"pr 1\n", path_in_repo="a.txt", repo_id=REPO, create_pr=True)
        with mounted(srv, REPO, tmp_path / "m", revision=pr.pr_revision, args=["--poll-interval", "1"]) as m:
            assert (m.path / "a.txt").read_bytes() == b"pr 1\n"
            api.upload_file(path_or_fileobj=b"pr 2\n", path_in_repo="a.txt", repo_id=REPO, revision=pr.pr_revision)
            _shows_within_two_polls(m, m.path / "a.txt", b"pr 2\n")
            assert _follow(m)["revision"] == "refs/pr/1"


def test_failed_checks_only_count_and_following_resumes_when_the_server_is_back(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv") as srv:
        api = HfApi(endpoint=srv.url, token=srv.token)
        api.create_repo(REPO)
        api.upload_file(path_or_fileobj=b"one\n", path_in_repo="a.txt", repo_id=REPO)
        with mounted(srv, REPO, tmp_path / "m", args=["--poll-interval", "1", "--read-only"]) as m:
            a = m.path / "a.txt"
            assert a.read_bytes() == b"one\n"
            srv.stop()
            wait_until(lambda: _follow(m)["failures"] >= 2, "two failed checks", timeout_s=60)
            assert a.read_bytes() == b"one\n" and _follow(m)["last_error"]      # served as before
            srv.start()
            wait_until(lambda: _follow(m)["last_error"] is None, "a check that succeeds again", timeout_s=60)
            api.upload_file(path_or_fileobj=b"two\n", path_in_repo="a.txt", repo_id=REPO)
            wait_until(lambda: _reads(a, b"two\n"), "the new commit after the server came back", timeout_s=60)
            assert m.logs().count("following t/follow@main: checking the head") == 1   # once, not per check
