"""Listings, tags, settings, moves, duplicates, branches through unmodified huggingface_hub and the ``hf`` CLI
against a real ``xetfs serve``: 250 repos over several ``Link`` pages, ``hf repos ls``, a tag download,
``update_repo_settings(private=True)`` refusing anonymous readers, ``move_repo`` keeping the old name,
``duplicate_repo`` copying no data, ``create_branch`` from a revision, the Hub's 404 JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from xetfs.testing.deps import required
from xetfs.testing.hub import new_token
from xetfs.testing.hubs import BACKENDS, hub
from xetfs.testing.server import ServerHandle, env_for_hf, make_bytes

required("huggingface_hub")
from huggingface_hub import HfApi, hf_hub_download  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError  # noqa: E402

MiB = 1024 * 1024
pytestmark = pytest.mark.usefixtures("hf_client_env")


@pytest.fixture(scope="module", params=BACKENDS)
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The same tests on one local server and on a cluster of two nodes (PostgreSQL + SeaweedFS)."""
    with hub(request.param, tmp_path_factory.mktemp("srv"), request, public_read=True) as s:
        yield s


def _hf(srv: ServerHandle, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    hf = Path(sys.executable).with_name("hf")
    return subprocess.run([str(hf), *args], env=env_for_hf(tmp / "hf_home", srv.url, srv.token),
                          capture_output=True, text=True, timeout=300)


def test_list_models_250_repos_all_pages(srv: ServerHandle, tmp_path: Path) -> None:
    api = HfApi(endpoint=srv.url, token=srv.token)
    names = [f"team/m{i:03d}" for i in range(250)]
    for name in names:
        api.create_repo(name)
    api.create_repo("other/searchable-model")
    api.create_repo("team/a-dataset", repo_type="dataset")
    api.create_repo("team/a-space", repo_type="space", space_sdk="docker")

    listed = [m.id for m in api.list_models(author="team")]
    assert listed == names                                       # every page, in id order, no duplicate
    status, headers, body = srv.request("GET", "/api/models?author=team", token=srv.token)
    assert status == 200 and len(json.loads(body)) == 100 and 'rel="next"' in headers["Link"]
    status, headers, body = srv.request("GET", "/api/models?author=team&cursor=200", token=srv.token)
    assert len(json.loads(body)) == 50 and "Link" not in headers
    assert [m.id for m in api.list_models(author="team", limit=7)] == names[:7]
    assert [m.id for m in api.list_models(search="SEARCHABLE")] == ["other/searchable-model"]
    assert [d.id for d in api.list_datasets(author="team")] == ["team/a-dataset"]
    assert [s.id for s in api.list_spaces(author="team")] == ["team/a-space"]

    api.upload_file(path_or_fileobj=b"fresh\n", path_in_repo="f.txt", repo_id="team/m123")
    newest = next(iter(api.list_models(author="team", sort="last_modified", limit=1)))
    assert newest.id == "team/m123"
    assert sum(1 for _ in api.list_models(author="team", sort="created_at")) == 250

    out = _hf(srv, tmp_path, "repos", "ls", "--limit", "0")
    assert out.returncode == 0, out.stderr
    for name in ("team/m000", "team/m249", "team/a-dataset", "team/a-space", "other/searchable-model"):
        assert name in out.stdout


def test_tags_branches_and_unknown_routes(srv: ServerHandle, tmp_path: Path) -> None:
    api = HfApi(endpoint=srv.url, token=srv.token)
    api.create_repo("t/tags")
    api.upload_file(path_or_fileobj=b"v1\n", path_in_repo="f.txt", repo_id="t/tags")
    v1 = api.repo_info("t/tags").sha
    api.create_tag("t/tags", tag="v1.0", tag_message="first")
    api.upload_file(path_or_fileobj=b"v2\n", path_in_repo="f.txt", repo_id="t/tags")
    refs = api.list_repo_refs("t/tags")
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v1.0", "refs/tags/v1.0", v1)]
    assert [b.name for b in refs.branches] == ["main"]
    p = hf_hub_download("t/tags", "f.txt", revision="v1.0", endpoint=srv.url, token=srv.token, cache_dir=tmp_path / "c")
    assert Path(p).read_bytes() == b"v1\n"
    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag("t/tags", tag="v1.0")
    assert err.value.response.status_code == 409
    with pytest.raises(HfHubHTTPError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="g.txt", repo_id="t/tags", revision="refs/tags/v1.0")
    api.delete_tag("t/tags", tag="v1.0")
    assert api.list_repo_refs("t/tags").tags == []

    api.create_branch("t/tags", branch="old", revision=v1)
    p = hf_hub_download("t/tags", "f.txt", revision="old", endpoint=srv.url, token=srv.token, cache_dir=tmp_path / "d")
    assert Path(p).read_bytes() == b"v1\n"

    api.super_squash_history("t/tags", commit_message="squashed")
    commits = api.list_repo_commits("t/tags")
    assert [c.title for c in commits] == ["squashed"]
    assert api.list_repo_files("t/tags") == ["f.txt"]

    status, _, body = srv.request("GET", "/api/no/such/route", token=srv.token)
    assert status == 404 and json.loads(body) == {"error": "no route GET /api/no/such/route"}
    out = _hf(srv, tmp_path, "download", "t/no-such-repo", "f.txt")
    assert out.returncode != 0 and "Traceback" not in out.stderr


def test_move_and_duplicate(srv: ServerHandle, tmp_path: Path) -> None:
    api = HfApi(endpoint=srv.url, token=srv.token)
    api.create_repo("t/old-name")
    data = make_bytes("float32", 3 * MiB, 7)
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="t/old-name")
    api.move_repo("t/old-name", "t/new-name")
    assert api.repo_info("t/new-name").id == "t/new-name"
    assert api.repo_info("t/old-name").id == "t/new-name"                 # the old name redirects
    for name in ("t/old-name", "t/new-name"):
        p = hf_hub_download(name, "w.bin", endpoint=srv.url, token=srv.token, cache_dir=tmp_path / name)
        assert Path(p).read_bytes() == data
    assert "t/old-name" not in [m.id for m in api.list_models(author="t")]
    for limited_to, asked in (("t/new-name", "t/old-name"), ("t/old-name", "t/new-name")):
        scoped = HfApi(endpoint=srv.url, token=new_token(srv, "read", limited_to))
        assert scoped.repo_info(asked).id == "t/new-name"                 # a token follows its repo's move
        p = hf_hub_download(asked, "w.bin", endpoint=srv.url, token=scoped.token, cache_dir=tmp_path / "s" / asked)
        assert Path(p).read_bytes() == data
    other = HfApi(endpoint=srv.url, token=new_token(srv, "read", "t/other"))
    for asked in ("t/new-name", "t/old-name", "t/no-such-repo"):
        with pytest.raises(HfHubHTTPError) as err:
            other.repo_info(asked)
        assert err.value.response.status_code == 403                      # the same answer, existing or not

    before = srv.objects_bytes()
    url = api.duplicate_repo("t/new-name", "t/copy")
    assert url.repo_id == "t/copy"
    after = srv.objects_bytes()
    assert after - before < 64 * 1024                                   # no xorb copied: metadata only
    p = hf_hub_download("t/copy", "w.bin", endpoint=srv.url, token=srv.token, cache_dir=tmp_path / "copy")
    assert Path(p).read_bytes() == data
    with pytest.raises(HfHubHTTPError) as err:
        api.move_repo("t/copy", "t/new-name")
    assert err.value.response.status_code == 409


def test_update_repo_settings_private_and_gated(srv: ServerHandle, tmp_path: Path) -> None:
    api = HfApi(endpoint=srv.url, token=srv.token)
    anon = HfApi(endpoint=srv.url, token=False)
    api.create_repo("t/secret")
    api.upload_file(path_or_fileobj=b"hidden\n", path_in_repo="f.txt", repo_id="t/secret")
    assert anon.repo_info("t/secret").private is False
    api.update_repo_settings("t/secret", private=True, gated="manual")
    info = api.repo_info("t/secret")
    assert info.private is True and info.gated == "manual"
    with pytest.raises(RepositoryNotFoundError):                          # anonymous: as if it did not exist
        anon.repo_info("t/secret")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("t/secret", "f.txt", endpoint=srv.url, token=False, cache_dir=tmp_path / "anon")
    with pytest.raises(RepositoryNotFoundError):
        anon.get_repo_discussions("t/secret").__next__()
    assert hf_hub_download("t/secret", "f.txt", endpoint=srv.url, token=srv.token, cache_dir=tmp_path / "ok")
    assert "t/secret" not in [m.id for m in anon.list_models(author="t")]
    assert "t/secret" in [m.id for m in api.list_models(author="t")]
    api.update_repo_settings("t/secret", private=False, gated=False)
    assert anon.repo_info("t/secret").gated is False
