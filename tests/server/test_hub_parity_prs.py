"""Pull requests and discussions through unmodified huggingface_hub and the ``hf`` CLI against a real
``xetfs serve``: ``create_pr`` commits to ``refs/pr/N`` (main unchanged), listing, details, comments,
fast-forward and merge-commit merges, a conflict's 409, close/reopen, downloads of ``refs/pr/N``."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from xetfs.testing.deps import required
from xetfs.testing.files import write_tree
from xetfs.testing.hubs import BACKENDS, hub
from xetfs.testing.server import ServerHandle, env_for_hf, make_bytes

required("huggingface_hub")
from huggingface_hub import HfApi, hf_hub_download  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError  # noqa: E402

MiB = 1024 * 1024
pytestmark = pytest.mark.usefixtures("hf_client_env")


@pytest.fixture(scope="module", params=BACKENDS)
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The same tests on one local server and on a cluster of two nodes (PostgreSQL + SeaweedFS)."""
    with hub(request.param, tmp_path_factory.mktemp("srv"), request) as s:
        yield s


def _hf(srv: ServerHandle, tmp: Path, *args: str) -> str:
    hf = Path(sys.executable).with_name("hf")
    out = subprocess.run([str(hf), *args], env=env_for_hf(tmp / "hf_home", srv.url, srv.token),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_create_pr_merge_and_download(srv: ServerHandle, tmp_path: Path) -> None:
    api = HfApi(endpoint=srv.url, token=srv.token)
    api.create_repo("t/prs")
    write_tree(tmp_path / "v1", {"a.txt": b"one\n", "w.bin": make_bytes("float32", 2 * MiB, 1)})
    api.upload_folder(folder_path=tmp_path / "v1", repo_id="t/prs")
    main_before = api.repo_info("t/prs").sha

    new_w = make_bytes("float32", 2 * MiB, 2)
    write_tree(tmp_path / "v2", {"w.bin": new_w, "b.txt": b"two\n"})
    info = api.upload_folder(folder_path=tmp_path / "v2", repo_id="t/prs", create_pr=True,
                             commit_message="new weights")
    assert info.pr_num == 1 and info.pr_revision == "refs/pr/1"
    assert info.pr_url == f"{srv.url}/t/prs/discussions/1"
    assert api.repo_info("t/prs").sha == main_before                       # main unchanged
    assert sorted(api.list_repo_files("t/prs")) == ["a.txt", "w.bin"]
    assert sorted(api.list_repo_files("t/prs", revision="refs/pr/1")) == ["a.txt", "b.txt", "w.bin"]
    refs = api.list_repo_refs("t/prs", include_pull_requests=True)
    assert [(r.name, r.ref, r.target_commit) for r in refs.pull_requests] == [("refs/pr/1", "refs/pr/1", info.oid)]
    assert [b.name for b in refs.branches] == ["main"] and api.list_repo_refs("t/prs").pull_requests is None

    d = api.get_discussion_details("t/prs", 1)
    # opened empty by the client's pipeline, then committed to: a draft, as on the Hub
    assert (d.is_pull_request, d.status, d.title, d.target_branch) == (True, "draft", "new weights", "refs/heads/main")
    old_w = make_bytes("float32", 2 * MiB, 1)
    pointer = (f"-oid sha256:{hashlib.sha256(old_w).hexdigest()}\n+oid sha256:{hashlib.sha256(new_w).hexdigest()}\n"
               f" size {len(new_w)}\n")                                   # an LFS file's diff: its pointer
    assert d.diff.startswith("diff --git a/b.txt b/b.txt\nnew file mode 100644\n") and "+two\n" in d.diff
    assert "diff --git a/w.bin b/w.bin\nindex " in d.diff and pointer in d.diff and "a.txt" not in d.diff
    # the client's pipeline opens the pull request (its description is the first comment), then commits to it
    assert [(e.type, getattr(e, "oid", None)) for e in d.events] == [("comment", None), ("commit", info.oid)]
    assert d.conflicting_files == []
    listed = list(api.get_repo_discussions("t/prs"))
    assert [(x.num, x.is_pull_request, x.status) for x in listed] == [(1, True, "draft")]
    c = api.comment_discussion("t/prs", 1, "looks good")
    assert c.content == "looks good" and c.author == "admin"

    # hf download --revision refs/pr/1 gets the PR's bytes while main still has the old ones
    out_dir = tmp_path / "dl"
    _hf(srv, tmp_path, "download", "t/prs", "w.bin", "--revision", "refs/pr/1", "--local-dir", str(out_dir))
    assert (out_dir / "w.bin").read_bytes() == new_w
    p = hf_hub_download("t/prs", "w.bin", endpoint=srv.url, token=srv.token, cache_dir=tmp_path / "c")
    assert Path(p).read_bytes() == make_bytes("float32", 2 * MiB, 1)

    api.merge_pull_request("t/prs", 1)                                      # fast-forward
    assert api.repo_info("t/prs").sha == info.oid
    d = api.get_discussion_details("t/prs", 1)
    assert d.status == "merged" and d.merge_commit_oid == info.oid
    assert pointer in d.diff and "+two\n" in d.diff                        # what it brought, after the merge
    assert [e.type for e in d.events] == ["comment", "commit", "comment", "status-change"]
    p = hf_hub_download("t/prs", "w.bin", endpoint=srv.url, token=srv.token, cache_dir=tmp_path / "c3")
    assert Path(p).read_bytes() == new_w
    with pytest.raises(HfHubHTTPError):
        api.merge_pull_request("t/prs", 1)                                  # already merged


def test_merge_commit_conflict_close_reopen(srv: ServerHandle, tmp_path: Path) -> None:
    api = HfApi(endpoint=srv.url, token=srv.token)
    api.create_repo("t/prs2")
    api.upload_file(path_or_fileobj=b"base\n", path_in_repo="x.txt", repo_id="t/prs2")
    pr1 = api.upload_file(path_or_fileobj=b"pr one\n", path_in_repo="y.txt", repo_id="t/prs2", create_pr=True)
    pr2 = api.upload_file(path_or_fileobj=b"pr two\n", path_in_repo="x.txt", repo_id="t/prs2", create_pr=True)
    assert (pr1.pr_num, pr2.pr_num) == (1, 2)
    api.upload_file(path_or_fileobj=b"main moved\n", path_in_repo="x.txt", repo_id="t/prs2")
    head = api.repo_info("t/prs2").sha

    api.merge_pull_request("t/prs2", 1)                                     # main moved: a merge commit
    merged = api.repo_info("t/prs2").sha
    assert merged not in (head, pr1.oid)
    assert api.list_repo_commits("t/prs2")[0].title == "Merge pull request #1: Upload y.txt with huggingface_hub"
    assert api.list_repo_commits("t/prs2")[1].commit_id == head
    for name, data in {"x.txt": b"main moved\n", "y.txt": b"pr one\n"}.items():
        p = hf_hub_download("t/prs2", name, endpoint=srv.url, token=srv.token, cache_dir=tmp_path / "c")
        assert Path(p).read_bytes() == data

    assert api.get_discussion_details("t/prs2", 2).conflicting_files == ["x.txt"]
    with pytest.raises(HfHubHTTPError) as err:
        api.merge_pull_request("t/prs2", 2)
    assert err.value.response.status_code == 409 and "x.txt" in str(err.value)
    assert api.repo_info("t/prs2").sha == merged

    api.change_discussion_status("t/prs2", 2, "closed", comment="superseded")
    assert api.get_discussion_details("t/prs2", 2).status == "closed"
    assert [d.num for d in api.get_repo_discussions("t/prs2", discussion_status="open")] == []
    api.change_discussion_status("t/prs2", 2, "open")
    assert api.get_discussion_details("t/prs2", 2).status == "open"
    api.rename_discussion("t/prs2", 2, "edit x")
    assert api.get_discussion_details("t/prs2", 2).title == "edit x"

    disc = api.create_discussion("t/prs2", "a question", description="why?")
    assert (disc.num, disc.is_pull_request, disc.events[0].content) == (3, False, "why?")
    empty = api.create_pull_request("t/prs2", "empty pr")
    assert (empty.num, empty.is_pull_request, empty.status, empty.diff) == (4, True, "draft", "")
    api.change_discussion_status("t/prs2", 4, "open")                       # publishing a draft
    assert api.get_discussion_details("t/prs2", 4).status == "open"
    assert [d.num for d in api.get_repo_discussions("t/prs2", discussion_type="pull_request")] == [4, 2, 1]
    assert [d.num for d in api.get_repo_discussions("t/prs2", discussion_type="discussion")] == [3]
    with pytest.raises(HfHubHTTPError):
        api.merge_pull_request("t/prs2", 3)                                 # not a pull request
    ro = HfApi(endpoint=srv.url, token=False)
    with pytest.raises(HfHubHTTPError) as err:
        ro.comment_discussion("t/prs2", 1, "anonymous")
    assert err.value.response.status_code in (401, 403)


def test_hf_upload_create_pr(srv: ServerHandle, tmp_path: Path) -> None:
    api = HfApi(endpoint=srv.url, token=srv.token)
    api.create_repo("t/prs3")
    api.upload_file(path_or_fileobj=b"v1\n", path_in_repo="f.txt", repo_id="t/prs3")
    head = api.repo_info("t/prs3").sha
    (tmp_path / "f.txt").write_bytes(b"v2\n")
    out = _hf(srv, tmp_path, "upload", "t/prs3", str(tmp_path / "f.txt"), "f.txt", "--create-pr")
    assert api.repo_info("t/prs3").sha == head                              # main unchanged
    (pr,) = api.list_repo_refs("t/prs3", include_pull_requests=True).pull_requests
    assert pr.name == "refs/pr/1" and f"/t/prs3/commit/{pr.target_commit}" in out
    p = hf_hub_download("t/prs3", "f.txt", revision="refs/pr/1", endpoint=srv.url, token=srv.token,
                        cache_dir=tmp_path / "c")
    assert Path(p).read_bytes() == b"v2\n"
