"""``xetfs gc`` against a real ``xetfs serve`` (SQLite and a local store; the first two tests also on a cluster
of two nodes sharing PostgreSQL and a SeaweedFS bucket, ``xetfs.testing.hubs``): a deleted repo's 3 versions of a 64 MiB
file are freed to the byte while a repo sharing their chunks stays byte-exact; an upload between its xorbs
and its shard survives a collection (grace period), and with no grace its shard is refused, not accepted
broken; ``--dry-run`` changes nothing; deletions are in the audit log."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from xetfs.testing.cas import build_file, upload
from xetfs.testing.deps import required
from xetfs.core.gitblob import git_blob_oid
from xetfs.server.auth import Principal
from xetfs.server.context import State
from xetfs.server.services import repos
from xetfs.server.stores.local import LocalStorage
from xetfs.testing.hub import add_file, cas_token, commit, commit_body, lfs_file
from xetfs.testing.hubs import BACKENDS, hub
from xetfs.testing.server import ServerHandle, env_for_hf, make_bytes, running_server

required("huggingface_hub")
from huggingface_hub import HfApi, hf_hub_download  # noqa: E402

MiB = 1024 * 1024


def _gc(srv: ServerHandle, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "xetfs.cli.main", "gc", "--data", str(srv.data_dir), "--json",
                          *srv.cli_args, *args], capture_output=True, text=True, timeout=600,
                         env={**os.environ, **srv.cli_env})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _metadata_bytes(srv: ServerHandle) -> int:
    return sum(p.stat().st_size for p in srv.data_dir.iterdir() if p.name.startswith("metadata.sqlite3")
               or p.name == "audit.log")


@pytest.mark.usefixtures("hf_client_env")
@pytest.mark.parametrize("backend", BACKENDS)
def test_gc_frees_a_deleted_repo_and_keeps_a_sharing_one(backend: str, tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    with hub(backend, tmp_path, request) as srv:
        api = HfApi(endpoint=srv.url, token=srv.token)
        api.create_repo("t/keep")
        shared = make_bytes("float32", 16 * MiB, 1)
        api.upload_file(path_or_fileobj=shared, path_in_repo="x.bin", repo_id="t/keep")
        objects0, total0 = srv.objects_bytes(), _bytes(srv.data_dir)

        api.create_repo("t/big")
        versions = [shared + make_bytes("float32", 48 * MiB, 2), make_bytes("float32", 64 * MiB, 3),
                    make_bytes("float32", 64 * MiB, 4)]
        api.upload_file(path_or_fileobj=versions[0], path_in_repo="w.bin", repo_id="t/big")
        assert srv.objects_bytes() - objects0 < 56 * MiB      # v1 reuses t/keep's chunks
        for v in versions[1:]:
            api.upload_file(path_or_fileobj=v, path_in_repo="w.bin", repo_id="t/big")
        assert srv.objects_bytes() - objects0 > 150 * MiB

        assert _gc(srv, "--grace", "0")["xorbs"] == 0                     # every version is history of t/big
        api.delete_repo("t/big")
        dry = _gc(srv, "--grace", "0", "--dry-run")
        assert dry["xorbs"] > 0 and srv.objects_bytes() - objects0 > 150 * MiB
        done = _gc(srv, "--grace", "0")
        assert (done["xorbs"], done["shards"], done["spared"]) == (dry["xorbs"], dry["shards"], 0)
        assert srv.objects_bytes() == objects0                # to the byte
        if backend == "local":                                             # (a cluster's metadata is in PostgreSQL)
            assert _bytes(srv.data_dir) - total0 <= _metadata_bytes(srv)
        audit = [json.loads(line) for line in (srv.data_dir / "audit.log").read_text().splitlines()]
        assert sum(a["action"] == "gc_delete" for a in audit) == done["xorbs"] + done["shards"] + done["blobs"]
        assert _gc(srv, "--grace", "0")["xorbs"] == 0                     # nothing left to collect

        p = hf_hub_download("t/keep", "x.bin", endpoint=srv.url, token=srv.token, cache_dir=tmp_path / "c")
        assert Path(p).read_bytes() == shared
        # the same bytes upload again (a fresh client: its local cache does not name the swept xorbs)
        api.create_repo("t/big")
        (tmp_path / "w.bin").write_bytes(versions[2])
        hf = Path(sys.executable).with_name("hf")
        out = subprocess.run([str(hf), "upload", "t/big", str(tmp_path / "w.bin"), "w.bin"], capture_output=True,
                             text=True, timeout=300, env=env_for_hf(tmp_path / "hf2", srv.url, srv.token))
        assert out.returncode == 0, out.stderr
        p = hf_hub_download("t/big", "w.bin", endpoint=srv.url, token=srv.token, cache_dir=tmp_path / "d")
        assert Path(p).read_bytes() == versions[2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_gc_between_xorbs_and_shard(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with hub(backend, tmp_path, request) as srv:
        srv.create_repo("t/demo")
        token = cas_token(srv)
        f = build_file(size=3 * MiB, seed=31, xorbs=2)
        for x in f.xorbs:                                                  # the xorbs, not yet the shard
            assert srv.request("POST", f"/v1/xorbs/default/{x.hash}", x.data, token=token)[0] == 200
        assert _gc(srv)["xorbs"] == 0                                      # within the default 24 h grace
        assert srv.request("POST", "/v1/shards", f.shard(), token=token)[0] == 200
        assert commit(srv, "t/demo", [lfs_file("a.bin", f.sha256, len(f.data))])[0] == 200
        assert srv.request("GET", "/t/demo/resolve/main/a.bin")[2] == f.data

        g = build_file(size=3 * MiB, seed=32, xorbs=2)
        for x in g.xorbs:
            assert srv.request("POST", f"/v1/xorbs/default/{x.hash}", x.data, token=token)[0] == 200
        assert _gc(srv, "--grace", "0")["xorbs"] == 2                      # no grace: the lone xorbs go
        status, _, body = srv.request("POST", "/v1/shards", g.shard(), token=token)
        assert status == 400 and b"not stored" in body                     # refused, not accepted broken
        assert upload(srv, g, token) == (200, 200)                         # the client uploads them again
        assert commit(srv, "t/demo", [lfs_file("b.bin", g.sha256, len(g.data))])[0] == 200
        assert srv.request("GET", "/t/demo/resolve/main/b.bin")[2] == g.data
        assert srv.request("GET", "/t/demo/resolve/main/a.bin")[2] == f.data


def test_serve_gc_interval(tmp_path: Path) -> None:
    from xetfs.testing.sync import wait_until

    f, g = build_file(size=2 * MiB, seed=33, xorbs=2), build_file(size=2 * MiB, seed=34, xorbs=2)
    with running_server(tmp_path) as srv:                                  # first without a collector
        srv.create_repo("t/demo")
        token = cas_token(srv)
        assert upload(srv, f, token) == (200, 200)
        assert commit(srv, "t/demo", [lfs_file("a.bin", f.sha256, len(f.data))])[0] == 200
        for x in g.xorbs:                                                  # lone xorbs: garbage
            assert srv.request("POST", f"/v1/xorbs/default/{x.hash}", x.data, token=token)[0] == 200
    xorbs = srv.data_dir / "objects" / "xorbs"
    assert all((xorbs / str(x.hash)).exists() for x in g.xorbs)
    with running_server(tmp_path, extra_args=["--gc-interval", "0.2s", "--gc-grace", "0"]) as srv:
        def collected() -> bool:
            return not any((xorbs / str(x.hash)).exists() for x in g.xorbs)
        wait_until(collected, "the server's collector deleted the lone xorbs")
        assert all((xorbs / str(x.hash)).exists() for x in f.xorbs)
        assert srv.request("GET", "/t/demo/resolve/main/a.bin")[2] == f.data
    audit = (srv.data_dir / "audit.log").read_text()
    assert all(f"xorbs/{x.hash}" in audit for x in g.xorbs)


def test_keep_history(tmp_path: Path) -> None:
    with running_server(tmp_path) as srv:
        srv.create_repo("t/demo")
        token = cas_token(srv)
        files = [build_file(size=MiB, seed=40 + i) for i in range(4)]
        oids = []
        for f in files:
            assert upload(srv, f, token) == (200, 200)
            status, _, out = commit(srv, "t/demo", [lfs_file("w.bin", f.sha256, len(f.data))])
            assert status == 200
            oids.append(out["commitOid"])
        tag = json.dumps({"tag": "v0"}).encode()
        assert srv.request("POST", f"/api/models/t/demo/tag/{oids[0]}", tag, {"Content-Type": "application/json"},
                           token=srv.token)[0] == 200
        assert _gc(srv, "--grace", "0")["xorbs"] == 0                     # default: all history keeps its data
        done = _gc(srv, "--grace", "0", "--keep-history", "1")
        assert (done["xorbs"], done["files"]) == (2, 2)                   # commits 2 and 3: only history
        xorbs = srv.data_dir / "objects" / "xorbs"
        for i, f in enumerate(files):
            assert (xorbs / str(f.xorbs[0].hash)).exists() == (i in (0, 3)), i
        assert srv.request("GET", "/t/demo/resolve/main/w.bin")[2] == files[3].data
        assert srv.request("GET", "/t/demo/resolve/v0/w.bin")[2] == files[0].data   # a tag is a ref
        status, _, _ = srv.request("GET", f"/t/demo/resolve/{oids[1]}/w.bin")
        assert status >= 400                                             # its data is gone


def _rows(srv: ServerHandle, sql: str, args: tuple = ()) -> list[tuple]:
    with sqlite3.connect(srv.data_dir / "metadata.sqlite3") as db:
        return db.execute(sql, args).fetchall()


def test_gc_frees_a_deleted_repos_regular_files_and_rows(tmp_path: Path) -> None:
    """Small text files are stored inline as git blobs (``blobs/<oid>``), outside the Xet index: a deleted repo's
    blobs go, a blob another repo still names stays, and the deleted repo leaves no discussion or settings rows."""
    with running_server(tmp_path) as srv:
        api = HfApi(endpoint=srv.url, token=srv.token)
        shared, notes = b"# a model card both repos hold\n", [b"notes v1\n", b"notes v2, longer\n"]
        for repo in ("t/keep", "t/gone"):
            api.create_repo(repo)
            api.upload_file(path_or_fileobj=shared, path_in_repo="README.md", repo_id=repo)
        for v in notes:                                                    # history: both versions are roots
            api.upload_file(path_or_fileobj=v, path_in_repo="notes.txt", repo_id="t/gone")
        api.upload_file(path_or_fileobj=b'{"a": 1}', path_in_repo="config.json", repo_id="t/gone")
        api.create_discussion("t/gone", title="a question")
        api.update_repo_settings("t/gone", gated="auto")
        blobs = srv.data_dir / "objects" / "blobs"
        gone = {git_blob_oid(d) for d in [*notes, b'{"a": 1}']}
        assert gone <= {p.name for p in blobs.rglob("*") if p.is_file()}
        assert _gc(srv, "--grace", "0")["blobs"] == 0                     # every blob is named by a live commit

        api.delete_repo("t/gone")
        assert _rows(srv, "SELECT count(*) FROM discussions")[0][0] == 0
        assert _rows(srv, "SELECT count(*) FROM discussion_events")[0][0] == 0
        assert _rows(srv, "SELECT count(*) FROM repo_settings")[0][0] == 0
        assert _gc(srv, "--grace", "0", "--dry-run")["blobs"] == 3
        assert gone <= {p.name for p in blobs.rglob("*") if p.is_file()}   # a dry run deletes nothing
        assert _gc(srv, "--grace", "0")["blobs"] == 3
        left = {p.name for p in blobs.rglob("*") if p.is_file()}
        assert not gone & left and git_blob_oid(shared) in left
        assert _gc(srv, "--grace", "0")["blobs"] == 0                     # nothing left to collect
        audit = [json.loads(line) for line in (srv.data_dir / "audit.log").read_text().splitlines()]
        assert {a["what"] for a in audit if a["action"] == "gc_delete"} >= {f"blobs/{b}" for b in gone}
        p = hf_hub_download("t/keep", "README.md", endpoint=srv.url, token=srv.token, cache_dir=tmp_path / "c")
        assert Path(p).read_bytes() == shared


def test_a_commit_adding_a_blob_being_collected_retries_and_stores_it(tmp_path: Path) -> None:
    """The collector dooms a blob, then deletes it: a commit adding that content meanwhile gets 503 (its first
    write found the blob stored); one whose transaction lands after the collection stores the blob again."""
    with running_server(tmp_path) as srv:
        srv.create_repo("t/demo")
        data = b"the same small file\n"
        oid = git_blob_oid(data)
        assert commit(srv, "t/demo", [add_file("a.txt", data)])[0] == 200
        _rows(srv, "INSERT INTO gc_doomed_blobs VALUES (?, 0)", (oid,))    # the collector's step 1
        status, _, body = commit(srv, "t/demo", [add_file("b.txt", data)])
        assert status == 503 and "garbage-collected" in json.dumps(body)
        _rows(srv, "DELETE FROM gc_doomed_blobs")

        class CollectedMeanwhile(LocalStorage):
            """Real storage; a blob found already stored is deleted right after, as a collection that doomed,
            deleted and released it between the commit's first write and its transaction would."""
            def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
                stored = super().put_if_absent(key, data)
                if not stored and key == f"blobs/{oid}":
                    self.delete(key)
                return stored

        st = State(srv.data_dir, "unused", storage=CollectedMeanwhile(srv.data_dir / "objects"))
        repo = st.meta.repo("model", "t/demo")
        assert repo is not None
        repos.commit(st, Principal("admin", "write"), repo, "main", commit_body([add_file("c.txt", data)]))
        assert (srv.data_dir / "objects" / "blobs" / oid).read_bytes() == data
        for path in ("a.txt", "c.txt"):
            assert srv.request("GET", f"/t/demo/resolve/main/{path}")[2] == data
