"""CAS tokens are bound to their repo (issue: "CAS tokens issued by the token routes are bound to repo and
revision and expire"): a token reconstructs only files committed to its repo or uploaded with a token of its
repo; anything else is the same 404 as an unknown file. Global dedup stays global. Commits cannot pull another
repo's file in by sha256. A database from before the binding index is backfilled on open."""
from __future__ import annotations

import json
import signal
import sqlite3

import pytest

from xetfs.testing.server import ServerHandle, running_server

from xetfs.testing.cas import BuiltFile, build_file, cas_token, upload
from xetfs.testing.hub import commit, lfs_file


def _commit_lfs(srv: ServerHandle, repo: str, f: BuiltFile, path: str = "w.bin") -> int:
    return commit(srv, repo, [lfs_file(path, f.sha256, len(f.data))], summary="add")[0]


def _reads(srv: ServerHandle, f: BuiltFile, tok: str) -> list[int]:
    """Status of every route that hands out a reconstruction of ``f``."""
    h = f.file_hash
    batch = json.dumps([{"hash": str(h)}]).encode()
    return [srv.request("GET", f"/v1/reconstructions/{h}", token=tok)[0],
            srv.request("GET", f"/v2/reconstructions/{h}", headers={"Range": "bytes=0-99"}, token=tok)[0],
            srv.request("GET", f"/v1/reconstructions?file_id={h}", token=tok)[0],
            srv.request("POST", "/v1/reconstructions", batch, {"Content-Type": "application/json"}, token=tok)[0],
            srv.request("HEAD", f"/v1/files/{h}", token=tok)[0]]


@pytest.fixture(scope="module")
def two_repos(tmp_path_factory):
    """Repo t/a holds file ``a`` (committed), t/b holds ``b`` (committed) and ``pending`` (uploaded, not committed)."""
    with running_server(tmp_path_factory.mktemp("srv")) as srv:
        srv.create_repo("t/a")
        srv.create_repo("t/b")
        a, b, pending = build_file(seed=900), build_file(seed=901, xorbs=2), build_file(seed=902)
        assert upload(srv, a, cas_token(srv, "t/a")) == (200, 200)
        assert upload(srv, b, cas_token(srv, "t/b")) == (200, 200)
        assert upload(srv, pending, cas_token(srv, "t/b")) == (200, 200)
        assert _commit_lfs(srv, "t/a", a) == 200 and _commit_lfs(srv, "t/b", b) == 200
        yield srv, a, b, pending


def test_read_token_reconstructs_only_its_repo_files(two_repos):
    srv, a, b, _ = two_repos
    read_a, read_b = cas_token(srv, "t/a", "read"), cas_token(srv, "t/b", "read")
    assert _reads(srv, a, read_a) == [200] * 5
    assert _reads(srv, b, read_b) == [200] * 5
    assert _reads(srv, b, read_a) == [404] * 5
    assert _reads(srv, a, read_b) == [404] * 5
    assert _reads(srv, b, cas_token(srv, "t/a", "write")) == [404] * 5
    # a batch mixing an own file with a foreign one is refused as a whole
    status, _, _ = srv.request("GET", f"/v1/reconstructions?file_id={a.file_hash}&file_id={b.file_hash}", token=read_a)
    assert status == 404


def test_foreign_file_is_indistinguishable_from_unknown(two_repos):
    srv, _, b, _ = two_repos
    read_a = cas_token(srv, "t/a", "read")
    unknown = "ab" * 32
    st_b, h_b, body_b = srv.request("GET", f"/v2/reconstructions/{b.file_hash}", token=read_a)
    st_u, h_u, body_u = srv.request("GET", f"/v2/reconstructions/{unknown}", token=read_a)
    assert (st_b, st_u) == (404, 404)
    error_b, error_u = json.loads(body_b)["error"], json.loads(body_u)["error"]
    assert error_b.replace(str(b.file_hash), "X") == error_u.replace(unknown, "X")
    assert h_b.get("Content-Type") == h_u.get("Content-Type")


def test_uploaded_but_uncommitted_files_are_readable_by_the_uploading_repo_only(two_repos):
    srv, _, _, pending = two_repos
    assert _reads(srv, pending, cas_token(srv, "t/b", "write")) == [200] * 5
    assert _reads(srv, pending, cas_token(srv, "t/b", "read")) == [200] * 5
    assert _reads(srv, pending, cas_token(srv, "t/a", "read")) == [404] * 5
    assert _reads(srv, pending, cas_token(srv, "t/a", "write")) == [404] * 5


def test_commit_cannot_pull_in_another_repos_file_by_sha256(two_repos):
    srv, _, b, _ = two_repos
    assert _commit_lfs(srv, "t/a", b, "stolen.bin") == 404
    assert _reads(srv, b, cas_token(srv, "t/a", "read")) == [404] * 5
    # once repo A uploads the same content itself (proving it has the data), it may commit and read it
    assert upload(srv, b, cas_token(srv, "t/a")) == (200, 200)
    assert _commit_lfs(srv, "t/a", b, "own-copy.bin") == 200
    assert _reads(srv, b, cas_token(srv, "t/a", "read")) == [200] * 5


def test_global_dedup_stays_global(two_repos):
    srv, a, _, _ = two_repos
    tok_b = cas_token(srv, "t/b", "read")
    status, _, _ = srv.request("GET", f"/v1/chunks/default/{a.xorb.chunk_hashes[0]}", token=tok_b)
    assert status == 200


def test_empty_file_is_readable_by_any_repo(two_repos):
    srv = two_repos[0]
    status, _, body = srv.request("GET", f"/v2/reconstructions/{'0' * 64}", token=cas_token(srv, "t/a", "read"))
    assert status == 200 and json.loads(body)["terms"] == []


def test_deleted_repo_token_reads_nothing(tmp_path):
    with running_server(tmp_path) as srv:
        srv.create_repo("t/gone")
        f = build_file(seed=910)
        tok = cas_token(srv, "t/gone")
        assert upload(srv, f, tok) == (200, 200) and _commit_lfs(srv, "t/gone", f) == 200
        assert _reads(srv, f, tok) == [200] * 5
        body = json.dumps({"name": "gone", "organization": "t"}).encode()
        assert srv.request("DELETE", "/api/repos/delete", body, {"Content-Type": "application/json"})[0] == 200
        assert _reads(srv, f, tok) == [404] * 5
        srv.create_repo("t/gone")                                    # same name, new repo: starts empty
        assert _reads(srv, f, cas_token(srv, "t/gone", "read")) == [404] * 5


def test_existing_database_is_backfilled(tmp_path):
    with running_server(tmp_path) as srv:
        srv.create_repo("t/a")
        srv.create_repo("t/b")
        a = build_file(seed=920)
        assert upload(srv, a, cas_token(srv, "t/a")) == (200, 200) and _commit_lfs(srv, "t/a", a) == 200
        assert srv.stop(signal.SIGTERM) == 0
        db = sqlite3.connect(srv.data_dir / "metadata.sqlite3")     # the schema before repo binding
        db.executescript("DROP TABLE repo_files; DROP TABLE repo_uploads; PRAGMA user_version=0;")
        db.close()
        srv.start()
        assert _reads(srv, a, cas_token(srv, "t/a", "read")) == [200] * 5
        assert _reads(srv, a, cas_token(srv, "t/b", "read")) == [404] * 5
        db = sqlite3.connect(srv.data_dir / "metadata.sqlite3")
        assert db.execute("SELECT count(*) FROM repo_files").fetchone()[0] == 1
        db.close()


def test_public_read_anonymous_sees_committed_files_only(tmp_path):
    with running_server(tmp_path, public_read=True) as srv:
        srv.create_repo("t/pub")
        committed, pending = build_file(seed=930), build_file(seed=931)
        tok = cas_token(srv, "t/pub")
        assert upload(srv, committed, tok) == (200, 200) and upload(srv, pending, tok) == (200, 200)
        assert _commit_lfs(srv, "t/pub", committed) == 200
        assert srv.request("GET", f"/v1/reconstructions/{committed.file_hash}", token=None)[0] == 200
        assert srv.request("GET", f"/v1/reconstructions/{pending.file_hash}", token=None)[0] == 404
