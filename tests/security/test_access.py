"""Class 2 (private repos under --public-read), class 7 (names) and class 8 (tokens)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from xetfs.testing.cas import build_file, cas_token, upload
from xetfs.testing.hub import JSON, add_file, commit, lfs_file, new_token
from xetfs.testing.server import ServerHandle, running_server


def _create(srv: ServerHandle, repo_id: str, repo_type: str = "model", private: bool = False) -> int:
    org, name = repo_id.split("/")
    body = json.dumps({"name": name, "organization": org, "type": repo_type, "private": private}).encode()
    return srv.request("POST", "/api/repos/create", body, JSON)[0]


def test_private_repos_stay_hidden_from_anonymous_callers_under_public_read(tmp_path: Path) -> None:
    with running_server(tmp_path, public_read=True) as srv:
        assert _create(srv, "org/secret", private=True) == 200
        assert _create(srv, "org/open") == 200
        hidden, shown = build_file(seed=201), build_file(seed=202)
        for repo, f in (("org/secret", hidden), ("org/open", shown)):
            assert upload(srv, f, cas_token(srv, repo)) == (200, 200)
            assert commit(srv, repo, [lfs_file("w.bin", f.sha256, len(f.data)), add_file("a.txt", b"hi")])[0] == 200
        routes = [("GET", "/api/models/{r}"), ("GET", "/api/models/{r}/revision/main"),
                  ("GET", "/api/models/{r}/tree/main"), ("POST", "/api/models/{r}/paths-info/main"),
                  ("GET", "/{r}/resolve/main/w.bin"), ("GET", "/{r}/resolve/main/a.txt"),
                  ("GET", "/api/models/{r}/xet-read-token/main"), ("GET", "/api/models/{r}/refs"),
                  ("GET", "/api/models/{r}/commits/main")]
        for method, route in routes:
            body = b'{"paths": ["w.bin"]}' if method == "POST" else None
            status = srv.request(method, route.format(r="org/secret"), body, JSON, token=None)[0]
            assert status in (401, 404), (route, status)
            assert srv.request(method, route.format(r="org/open"), body, JSON, token=None)[0] == 200, route
            assert srv.request(method, route.format(r="org/secret"), body, JSON)[0] == 200, route
        for f, want in ((hidden, 404), (shown, 200)):
            for path in (f"/v1/reconstructions/{f.file_hash}", f"/v2/reconstructions/{f.file_hash}"):
                assert srv.request("GET", path, token=None)[0] == want, path
            assert srv.request("HEAD", f"/v1/files/{f.file_hash}", token=None)[0] == want


@pytest.mark.parametrize("branch", ["..", "a/../../b", "a\x00b", " ", "x" * 3000, "a..b", "-x", "a/", "a.lock",
                                    "a@{b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\\b", ".hidden", "a//b",
                                    "@", "a\x7f"])
def test_branch_names_follow_git_ref_rules(server: ServerHandle, branch: str) -> None:
    _create(server, "org/refs")
    status, _, body = server.request("POST", f"/api/models/org/refs/branch/{quote(branch, safe='')}", b"{}", JSON)
    assert status == 400, (branch[:20], status, body[:200])
    refs = json.loads(server.request("GET", "/api/models/org/refs/refs")[2])
    assert [b["name"] for b in refs["branches"]] == ["main"]


def test_good_branch_names_still_work(server: ServerHandle) -> None:
    _create(server, "org/good")
    for branch in ("dev", "feature/x-1", "v1.0", "ünïcode"):
        status, _, body = server.request("POST", f"/api/models/org/good/branch/{quote(branch, safe='')}", b"{}", JSON)
        assert status == 200, (branch, body)


@pytest.mark.parametrize("path", ["a/" + "x" * 256, ("d" * 200 + "/") * 21 + "f", "a\x01b", "a\nb", "a/\x1b[2J",
                                  "a\u2028b"])
def test_paths_have_bounded_segments_and_no_control_characters(server: ServerHandle, path: str) -> None:
    _create(server, "org/paths")
    status, _, body = commit(server, "org/paths", [add_file(path, b"x")])
    assert status == 400, (path[:40], status, body)
    assert commit(server, "org/paths", [add_file("a/" + "é" * 127, b"x")])[0] == 200   # 254 bytes: fine


@pytest.mark.parametrize("name", ["a--b", "-a", "a-", "a..b", ".a", "x" * 97, "a b", "a/b"])
def test_repo_names_follow_the_hub_pattern(server: ServerHandle, name: str) -> None:
    body = json.dumps({"name": name, "organization": "org"}).encode()
    assert server.request("POST", "/api/repos/create", body, JSON)[0] == 400


def test_repo_scoped_tokens_name_the_repo_type(server: ServerHandle) -> None:
    for repo_type in ("model", "dataset", "space"):
        assert _create(server, "org/a", repo_type) == 200
    token = new_token(server, "write", "datasets/org/a")
    ops = [add_file("x.txt", b"x")]
    assert commit(server, "org/a", ops, token=token, kind="datasets")[0] == 200
    assert commit(server, "org/a", ops, token=token, kind="models")[0] == 403
    assert commit(server, "org/a", ops, token=token, kind="spaces")[0] == 403
    model_token = new_token(server, "write", "org/a")
    assert commit(server, "org/a", ops, token=model_token, kind="models")[0] == 200
    assert commit(server, "org/a", ops, token=model_token, kind="datasets")[0] == 403
    for bad in ("../../x", "org/../x", "org", "a/b/c/d", "datasets/../x"):
        done = subprocess.run([sys.executable, "-m", "xetfs.cli.main", "token", "create", "--data",
                               str(server.data_dir), "--scope", "read", "--repo", bad], capture_output=True, text=True)
        assert done.returncode == 1 and done.stdout == "", bad
        assert done.stderr.startswith("xetfs: error: invalid repo"), done.stderr


def test_cas_tokens_die_with_their_repo(server: ServerHandle) -> None:
    assert _create(server, "org/gone") == 200
    old = cas_token(server, "org/gone")
    body = json.dumps({"name": "gone", "organization": "org"}).encode()
    assert server.request("DELETE", "/api/repos/delete", body, JSON)[0] == 200
    assert _create(server, "org/gone") == 200
    f = build_file(seed=203)
    assert upload(server, f, old) == (404, 404)
    assert server.request("GET", f"/v1/reconstructions/{f.file_hash}", token=old)[0] == 404
    assert upload(server, f, cas_token(server, "org/gone")) == (200, 200)
