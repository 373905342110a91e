"""``xetfs mount --revision refs/pr/N`` and ``--revision <tag>`` against a real ``xetfs serve``: the mount shows
the pull request's (or the tag's) files while ``main`` still has others."""
from __future__ import annotations

from pathlib import Path

import pytest

from xetfs.testing.deps import required
from xetfs.testing.mount import mounted
from xetfs.testing.server import make_bytes, running_server

required("huggingface_hub")
from huggingface_hub import HfApi  # noqa: E402

MiB = 1024 * 1024
pytestmark = pytest.mark.usefixtures("hf_client_env")


def test_mount_a_pull_request_and_a_tag(tmp_path: Path) -> None:
    old, new = make_bytes("float32", 2 * MiB, 61), make_bytes("float32", 2 * MiB, 62)
    with running_server(tmp_path / "srv") as srv:
        api = HfApi(endpoint=srv.url, token=srv.token)
        api.create_repo("t/mnt")
        api.upload_file(path_or_fileobj=old, path_in_repo="w.bin", repo_id="t/mnt")
        api.create_tag("t/mnt", tag="v1")
        pr = api.upload_file(path_or_fileobj=new, path_in_repo="w.bin", repo_id="t/mnt", create_pr=True)
        assert pr.pr_revision == "refs/pr/1"
        with mounted(srv, "t/mnt", tmp_path / "pr", revision="refs/pr/1") as m:
            assert (m.path / "w.bin").read_bytes() == new
        with mounted(srv, "t/mnt", tmp_path / "tag", revision="v1") as m:
            assert (m.path / "w.bin").read_bytes() == old
        with mounted(srv, "t/mnt", tmp_path / "main") as m:
            assert (m.path / "w.bin").read_bytes() == old
