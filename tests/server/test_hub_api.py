"""Hub API of a real ``xetfs serve`` (docs/protocol.md, "Hub API"): commits and their validation, listings, resolve
headers and ranges, tokens and scopes, error codes."""
from __future__ import annotations

import base64
import json

import pytest

from xetfs.core.gitblob import git_blob_oid, lfs_pointer
from xetfs.testing.server import ServerHandle, running_server

from xetfs.testing.cas import build_file, cas_token, upload
from xetfs.testing.hub import JSON, add_file, commit, lfs_file, new_token


def get_json(srv: ServerHandle, path: str, token: str = "admin") -> tuple[int, dict, object]:
    status, headers, body = srv.request("GET", path, token=token)
    return status, headers, json.loads(body) if body else None


def test_commit_tree_and_resolve(shared_server):
    srv = shared_server
    f = build_file(size=60_000, seed=200)
    assert upload(srv, f, cas_token(srv)) == (200, 200)
    lfs = lfs_file("w/model.bin", f.sha256, len(f.data))
    status, _, out = commit(srv, "t/demo", [add_file("a/b/c.txt", b"hello"), lfs])
    assert status == 200 and len(out["commitOid"]) == 40
    _, _, tree = get_json(srv, "/api/models/t/demo/tree/main?recursive=true")
    by_path = {e["path"]: e for e in tree}
    assert by_path["a/b/c.txt"] == {"type": "file", "oid": git_blob_oid(b"hello"), "size": 5, "path": "a/b/c.txt"}
    model = by_path["w/model.bin"]
    assert model["xetHash"] == str(f.file_hash) and model["lfs"]["oid"] == f.sha256
    assert model["oid"] == git_blob_oid(lfs_pointer(f.sha256, len(f.data)))
    assert by_path["a/b"]["type"] == "directory"
    _, _, top = get_json(srv, "/api/models/t/demo/tree/main")
    assert {e["path"] for e in top} >= {"a", "w"} and "a/b/c.txt" not in {e["path"] for e in top}
    _, _, sub = get_json(srv, "/api/models/t/demo/tree/main/a/b")
    assert [e["path"] for e in sub] == ["a/b/c.txt"]

    status, headers, _ = srv.request("HEAD", "/t/demo/resolve/main/w/model.bin")
    assert status == 200 and headers["X-Xet-Hash"] == str(f.file_hash)
    assert headers["X-Repo-Commit"] == out["commitOid"] and headers["X-Linked-Size"] == str(len(f.data))
    assert headers["X-Linked-Etag"].strip('"') == f.sha256 and 'rel="xet-auth"' in headers["Link"]
    status, headers, body = srv.request("GET", "/t/demo/resolve/main/w/model.bin", headers={"Range": "bytes=1000-40999"})
    assert (status, body, headers["Content-Range"]) == (206, f.data[1000:41000], f"bytes 1000-40999/{len(f.data)}")
    status, _, body = srv.request("GET", f"/t/demo/resolve/{out['commitOid']}/w/model.bin")
    assert (status, body) == (200, f.data)
    status, headers, body = srv.request("GET", "/t/demo/resolve/main/a/b/c.txt", headers={"Range": "bytes=1-2"})
    assert (status, body, headers["ETag"].strip('"')) == (206, b"el", git_blob_oid(b"hello"))
    assert srv.request("GET", "/t/demo/resolve/main/w/model.bin", headers={"Range": "bytes=999999-"})[0] == 416

    status, _, info = get_json(srv, "/api/models/t/demo/paths-info/main")
    status, _, body = srv.request("POST", "/api/models/t/demo/paths-info/main",
                                  json.dumps({"paths": ["w/model.bin", "a", "nope"]}).encode(), JSON)
    assert [e["path"] for e in json.loads(body)] == ["w/model.bin", "a"]


@pytest.mark.parametrize("path", ["../evil", "/abs", "a//b", "a/./b", "a/../b", "nul\x00x", "dir/"])
def test_bad_paths_are_400(shared_server, path):
    status, _, out = commit(shared_server, "t/demo", [add_file(path, b"x")])
    assert status == 400, out


def test_commit_errors(shared_server):
    srv = shared_server
    head = get_json(srv, "/api/models/t/demo/revision/main")[2]["sha"]    # type: ignore[index]
    lfs = lfs_file("x.bin", "0" * 64, 3)
    assert commit(srv, "t/demo", [lfs])[0] == 404
    assert commit(srv, "t/demo", [{"key": "deletedFile", "value": {"path": "nope.txt"}}])[0] == 404
    assert commit(srv, "t/demo", [{"key": "bogus", "value": {}}])[0] == 400
    status, _, _ = commit(srv, "t/demo", [add_file("p.txt", b"1")], parent=head)
    assert status == 200
    assert commit(srv, "t/demo", [add_file("q.txt", b"2")], parent=head)[0] == 412
    assert commit(srv, "t/demo", [add_file("q.txt", b"2")], rev="nobranch")[0] == 404
    assert srv.request("POST", "/api/models/t/demo/commit/main", b"not json", token="admin")[0] == 400
    assert get_json(srv, "/api/models/t/demo/revision/main")[2]["sha"] != head   # type: ignore[index]


def test_error_codes(shared_server):
    srv = shared_server
    for path, code in (("/api/models/t/missing", "RepoNotFound"), ("/api/models/t/demo/revision/nope", "RevisionNotFound"),
                       ("/api/models/t/demo/tree/main/nope", "EntryNotFound"),
                       ("/t/demo/resolve/main/nope.bin", "EntryNotFound"), ("/t/missing/resolve/main/x", "RepoNotFound")):
        status, headers, _ = srv.request("GET", path)
        assert (status, headers.get("X-Error-Code")) == (404, code), path
    assert srv.request("GET", "/api/agent-harnesses")[0] == 404
    body = json.dumps({"name": "demo", "organization": "t"}).encode()
    assert srv.request("POST", "/api/repos/create", body, JSON)[0] == 409


def test_preupload_modes_and_oids(shared_server):
    srv = shared_server
    commit(srv, "t/demo", [add_file("pre/known.txt", b"same")])
    files = [{"path": "pre/known.txt", "size": 4, "sample": base64.b64encode(b"same").decode()},
             {"path": "big.bin", "size": 5 << 20, "sample": base64.b64encode(b"abc").decode()},
             {"path": "bin.dat", "size": 10, "sample": base64.b64encode(b"\x00\x01").decode()}]
    status, _, body = srv.request("POST", "/api/models/t/demo/preupload/main", json.dumps({"files": files}).encode(), JSON)
    out = {f["path"]: f for f in json.loads(body)["files"]}
    assert status == 200
    assert (out["pre/known.txt"]["uploadMode"], out["pre/known.txt"]["oid"]) == ("regular", git_blob_oid(b"same"))
    assert out["big.bin"]["uploadMode"] == "lfs" and out["bin.dat"]["uploadMode"] == "lfs"


def test_tokens_and_scopes(shared_server):
    srv = shared_server
    read, write_other = new_token(srv, "read"), new_token(srv, "write", "t/other")
    assert srv.request("GET", "/api/models/t/demo", token=None)[0] == 401
    assert srv.request("GET", "/api/models/t/demo", token="xetfs_wrong")[0] == 401
    assert srv.request("GET", "/api/models/t/demo", headers={"Authorization": "Basic abc"}, token=None)[0] == 401
    assert srv.request("GET", "/api/models/t/demo", token=read)[0] == 200
    assert commit(srv, "t/demo", [add_file("r.txt", b"r")], token=read)[0] == 403
    assert srv.request("GET", "/api/models/t/demo/xet-write-token/main", token=read)[0] == 403
    assert srv.request("GET", "/api/models/t/demo/xet-read-token/main", token=read)[0] == 200
    assert srv.request("GET", "/api/models/t/demo/xet-read-token/nope", token=read)[0] == 404
    assert commit(srv, "t/demo", [add_file("r.txt", b"r")], token=write_other)[0] == 403
    body = json.dumps({"name": "other", "organization": "t"}).encode()
    assert srv.request("POST", "/api/repos/create", body, JSON, token=read)[0] == 403
    assert srv.request("POST", "/api/repos/create", body, JSON, token=write_other)[0] == 200
    assert commit(srv, "t/other", [add_file("r.txt", b"r")], token=write_other)[0] == 200
    assert srv.request("GET", "/api/models/t/demo/refs", token=write_other)[0] == 403


def test_public_read(tmp_path):
    with running_server(tmp_path, public_read=True, token="fixed-admin-token") as srv:
        assert srv.token == "fixed-admin-token"
        srv.create_repo("t/pub")
        commit(srv, "t/pub", [add_file("f.txt", b"public")])
        assert srv.request("GET", "/t/pub/resolve/main/f.txt", token=None)[2] == b"public"
        assert srv.request("GET", "/api/models/t/pub/xet-read-token/main", token=None)[0] == 200
        assert srv.request("GET", "/api/models/t/pub/xet-write-token/main", token=None)[0] == 401
        assert commit(srv, "t/pub", [add_file("g.txt", b"x")], token=None)[0] == 401
        assert not (srv.data_dir / "admin_token").exists()
