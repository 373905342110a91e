"""Class 4, shard metadata (issue 12): the sha256 a shard claims for a file is recomputed from the stored
xorbs before it is kept. A writer of repo B can neither squat the sha256 of repo A's file with junk (A's later
honest upload and commit still work) nor register real content under a fake sha256 (later commits carry the
true ``lfs.oid`` and ``ETag``). Both on the local store and on S3 (the check reads the xorbs back from either)."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from xetfs.core.hashing import sha256_to_shard
from xetfs.server.context import State
from xetfs.server.services import assemble
from xetfs.testing.cas import BuiltFile, build_file, cas_token, upload
from xetfs.testing.hub import commit, lfs_file
from xetfs.testing.server import ServerHandle


def _upload_claiming(srv: ServerHandle, f: BuiltFile, sha256_hex: str, token: str) -> int:
    """Upload ``f``'s xorbs (real), then a shard that gives ``sha256_hex`` as its sha256 -> the shard's status."""
    for x in f.xorbs:
        assert srv.request("POST", f"/v1/xorbs/default/{x.hash}", x.data, token=token)[0] == 200
    info = dataclasses.replace(f.info, sha256=sha256_to_shard(bytes.fromhex(sha256_hex)))
    status, _, _ = srv.request("POST", "/v1/shards", f.shard(info), token=token)
    return status


def _entry(srv: ServerHandle, repo: str, path: str) -> dict:  # type: ignore[type-arg]
    status, _, body = srv.request("POST", f"/api/models/{repo}/paths-info/main", json.dumps({"paths": [path]}).encode(),
                                  {"Content-Type": "application/json"})
    assert status == 200, body
    (entry,) = json.loads(body)
    return entry  # type: ignore[no-any-return]


def _commit_and_check(srv: ServerHandle, repo: str, f: BuiltFile, path: str) -> None:
    """Commit ``f`` in ``repo`` by its true sha256; its entry, ETag and bytes are the true ones."""
    status, _, answer = commit(srv, repo, [lfs_file(path, f.sha256, len(f.data))])
    assert status == 200, answer
    assert _entry(srv, repo, path)["lfs"]["oid"] == f.sha256
    status, headers, body = srv.request("GET", f"/{repo}/resolve/main/{path}")
    assert status == 200 and body == f.data
    assert headers["ETag"] == f'"{f.sha256}"'


def test_junk_under_another_files_sha256_is_refused_and_the_honest_upload_works(any_store_server: ServerHandle) -> None:
    srv = any_store_server
    srv.create_repo("org/a")
    srv.create_repo("org/b")
    real, junk = build_file(size=50_000, seed=301), build_file(size=30_000, seed=302)
    assert _upload_claiming(srv, junk, real.sha256, cas_token(srv, "org/b")) == 400
    status, _, answer = commit(srv, "org/b", [lfs_file("squat.bin", real.sha256, len(junk.data))])
    assert status in (400, 404), answer
    assert upload(srv, real, cas_token(srv, "org/a")) == (200, 200)
    _commit_and_check(srv, "org/a", real, "model.bin")


def test_real_content_under_a_fake_sha256_never_reaches_a_commit(any_store_server: ServerHandle) -> None:
    srv = any_store_server
    srv.create_repo("org/a")
    srv.create_repo("org/b")
    real = build_file(size=50_000, seed=303)
    fake = hashlib.sha256(b"not the content").hexdigest()
    assert _upload_claiming(srv, real, fake, cas_token(srv, "org/b")) == 400
    status, _, answer = commit(srv, "org/b", [lfs_file("poison.bin", fake, len(real.data))])
    assert status == 404, answer
    assert upload(srv, real, cas_token(srv, "org/a")) == (200, 200)
    _commit_and_check(srv, "org/a", real, "model.bin")
    assert upload(srv, real, cas_token(srv, "org/b")) == (200, 200), "the true claim is accepted from anyone"
    _commit_and_check(srv, "org/b", real, "copy.bin")


def test_a_file_spread_over_several_xorbs_is_verified_whole(server: ServerHandle) -> None:
    srv = server
    srv.create_repo("org/a")
    f = build_file(size=120_000, seed=304, xorbs=3)
    tok = cas_token(srv, "org/a")
    wrong = hashlib.sha256(f.data[:-1]).hexdigest()          # all but the last byte
    assert _upload_claiming(srv, f, wrong, tok) == 400
    assert upload(srv, f, tok) == (200, 200)
    _commit_and_check(srv, "org/a", f, "multi.bin")


def test_a_repeated_wrong_claim_costs_one_read(server: ServerHandle) -> None:
    srv = server
    srv.create_repo("org/a")
    srv.create_repo("org/b")
    f = build_file(size=70_000, seed=305)
    fake = hashlib.sha256(b"fake").hexdigest()
    tok_b = cas_token(srv, "org/b")

    def read_back() -> float:
        return srv.metrics().get("xetfs_cas_sha256_verified_bytes_total", 0.0)

    assert [_upload_claiming(srv, f, fake, tok_b) for _ in range(5)] == [400] * 5
    assert read_back() == len(f.data), "the file is read back once"
    assert upload(srv, f, cas_token(srv, "org/a")) == (200, 200)
    assert upload(srv, f, tok_b) == (200, 200)
    assert read_back() == len(f.data), "the true claim is known without reading again"


def test_file_sha256_reads_ahead_in_batches_of_any_size(server: ServerHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recomputed sha256 is the file's, checked or not, whatever the batches: one chunk each, several per
    xorb, one per xorb (the next batch is read while one is hashed)."""
    srv = server
    srv.create_repo("org/a")
    f = build_file(size=120_000, seed=305, xorbs=3)
    assert upload(srv, f, cas_token(srv, "org/a")) == (200, 200)
    st = State(srv.data_dir, "unused")
    rec = st.meta.file(f.file_hash)
    assert rec is not None
    for batch in (1, 9_000, 30_000, 1 << 30):
        monkeypatch.setattr(assemble, "DECODE_BATCH_BYTES", batch)
        for check in (False, True):
            assert assemble.file_sha256(st, rec, check_chunks=check) == f.sha256, (batch, check)
