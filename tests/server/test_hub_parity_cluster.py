"""Pull requests, listings, tags, settings and moves on a cluster: two ``xetfs serve`` nodes sharing
PostgreSQL and a SeaweedFS bucket, driven by unmodified huggingface_hub through both nodes."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from xetfs.testing.deps import required
from xetfs.testing.server import ServerHandle, make_bytes
from xetfs.testing.services import PostgresHandle, SeaweedFSHandle, two_nodes

required("psycopg")
required("huggingface_hub")
from huggingface_hub import HfApi, hf_hub_download  # noqa: E402
from huggingface_hub.errors import RepositoryNotFoundError  # noqa: E402

MiB = 1024 * 1024
pytestmark = pytest.mark.usefixtures("hf_client_env")


@pytest.fixture
def cluster(weed: SeaweedFSHandle, pg: PostgresHandle, tmp_path: Path) -> Iterator[tuple[ServerHandle, ServerHandle]]:
    with two_nodes(weed, pg, tmp_path, "--public-read") as nodes:
        yield nodes


def test_hub_parity_across_two_nodes(cluster: tuple[ServerHandle, ServerHandle], tmp_path: Path) -> None:
    a, b = cluster
    api_a, api_b = HfApi(endpoint=a.url, token=a.token), HfApi(endpoint=b.url, token=a.token)
    api_a.create_repo("t/pr")
    old, new = make_bytes("float32", 2 * MiB, 71), make_bytes("float32", 2 * MiB, 72)
    api_a.upload_file(path_or_fileobj=old, path_in_repo="w.bin", repo_id="t/pr")
    pr = api_a.upload_file(path_or_fileobj=new, path_in_repo="w.bin", repo_id="t/pr", create_pr=True)
    assert pr.pr_revision == "refs/pr/1"
    details = api_b.get_discussion_details("t/pr", 1)
    assert (details.status, details.is_pull_request) == ("open", True)
    api_b.comment_discussion("t/pr", 1, "via B")
    p = hf_hub_download("t/pr", "w.bin", revision="refs/pr/1", endpoint=b.url, token=a.token, cache_dir=tmp_path / "c")
    assert Path(p).read_bytes() == new
    api_b.merge_pull_request("t/pr", 1)
    assert api_a.repo_info("t/pr").sha == pr.oid
    assert [e.type for e in api_a.get_discussion_details("t/pr", 1).events][-2:] == ["comment", "status-change"]

    api_b.create_tag("t/pr", tag="v1", revision=pr.oid)
    assert [t.name for t in api_a.list_repo_refs("t/pr").tags] == ["v1"]
    for i in range(12):
        api_a.create_repo(f"team/m_{i:02d}")
    assert [m.id for m in api_b.list_models(author="team", search="M_1")] == ["team/m_10", "team/m_11"]
    assert len(list(api_b.list_models(author="team"))) == 12

    api_a.move_repo("t/pr", "t/moved")
    assert api_b.repo_info("t/pr").id == "t/moved"
    api_b.update_repo_settings("t/moved", private=True)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=a.url, token=False).repo_info("t/moved")
