"""Class 3, wrong bytes served: a flipped byte in a stored xorb (local store and S3).

``/resolve`` verifies every chunk it assembles: a damaged chunk drops the connection mid-stream (a short
body, never wrong bytes, never an error page inside the 200); ranges that avoid it still work. A re-upload
of the good xorb heals the store. ``xetfs fsck`` finds the bad object, quarantines it, and reports clean once
the store is healed.
"""
from __future__ import annotations

import json

import httpx
import pytest

from xetfs.testing.cas import build_file, cas_token, upload
from xetfs.testing.hub import commit, lfs_file
from xetfs.testing.stores import StoreServer


def _flip(st: StoreServer, key: str, pos: int) -> None:
    data = bytearray(st.storage.get(key))
    data[pos] ^= 0xFF
    st.storage.delete(key)
    assert st.storage.put_if_absent(key, bytes(data))


def test_damaged_xorb_is_never_served_heals_on_reupload_and_fsck_quarantines(store_server: StoreServer) -> None:
    st = store_server
    srv = st.srv
    srv.create_repo("sec/c")
    f = build_file(size=300_000, seed=7)
    tok = cas_token(srv, "sec/c")
    assert upload(srv, f, tok) == (200, 200)
    assert commit(srv, "sec/c", [lfs_file("w.bin", f.sha256, len(f.data))])[0] == 200
    x = f.xorb
    k = len(x.chunk_hashes) // 2
    key, at = f"xorbs/{x.hash}", sum(x.chunk_sizes[:k])         # file offset of the damaged chunk
    url = f"{srv.url}/sec/c/resolve/main/w.bin"
    auth = {"Authorization": f"Bearer {srv.token}"}

    def get(rng: str | None = None) -> httpx.Response:
        return httpx.get(url, headers={**auth, **({"Range": rng} if rng else {})}, timeout=30, trust_env=False)

    assert get().content == f.data
    _flip(st, key, x.chunk_offsets[k] + 8 + 3)
    for rng in (None, f"bytes={at - 10}-{at + 10}"):
        with pytest.raises(httpx.RemoteProtocolError):          # the connection drops part-way
            get(rng)
    ok = get(f"bytes=0-{at - 1}")
    assert (ok.status_code, ok.content) == (206, f.data[:at])

    status, _, body = srv.request("POST", f"/v1/xorbs/default/{x.hash}", x.data, token=tok)
    assert (status, json.loads(body)) == (200, {"was_inserted": True})
    assert get().content == f.data
    status, _, body = srv.request("POST", f"/v1/xorbs/default/{x.hash}", x.data, token=tok)
    assert json.loads(body) == {"was_inserted": False}

    _flip(st, key, x.chunk_offsets[k] + 8 + 3)
    done = st.xetfs("fsck", "--data", str(srv.data_dir), "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["checked"]["xorbs"] == 1 and report["checked"]["shards"] == 1
    assert [b["key"] for b in report["bad"]] == [key]
    assert not st.storage.exists(key) and st.storage.exists(f"quarantine/{key}")
    with pytest.raises(httpx.RemoteProtocolError):
        get()
    status, _, body = srv.request("POST", f"/v1/xorbs/default/{x.hash}", x.data, token=tok)
    assert (status, json.loads(body)) == (200, {"was_inserted": True})
    assert get().content == f.data
    done = st.xetfs("fsck", "--data", str(srv.data_dir))
    assert done.returncode == 0 and done.stdout.startswith("checked 1 xorbs, 1 shards, 0 blobs: 0 bad"), done


def test_a_damaged_stored_copy_refuses_the_true_sha256_claim_until_healed(store_server: StoreServer) -> None:
    """The sha256 a shard claims is recomputed without hashing each chunk again; a damaged stored copy gives
    another sha256, is then read again chunk by chunk and reported as damaged. Its sha256 is not remembered:
    once a re-upload heals the xorb, the same shard is accepted and the file committed."""
    st = store_server
    srv = st.srv
    srv.create_repo("sec/s")
    f = build_file(size=300_000, seed=8)
    tok = cas_token(srv, "sec/s")
    x = f.xorb
    assert srv.request("POST", f"/v1/xorbs/default/{x.hash}", x.data, token=tok)[0] == 200
    k = len(x.chunk_hashes) // 2
    _flip(st, f"xorbs/{x.hash}", x.chunk_offsets[k] + 8 + 3)
    status, _, body = srv.request("POST", "/v1/shards", f.shard(f.info), token=tok)
    assert status == 400 and b"damaged" in body, body
    status, _, body = srv.request("POST", f"/v1/xorbs/default/{x.hash}", x.data, token=tok)
    assert (status, json.loads(body)) == (200, {"was_inserted": True})
    status, _, body = srv.request("POST", "/v1/shards", f.shard(f.info), token=tok)
    assert status == 200, body
    assert commit(srv, "sec/s", [lfs_file("w.bin", f.sha256, len(f.data))])[0] == 200
    resolved = httpx.get(f"{srv.url}/sec/s/resolve/main/w.bin", headers={"Authorization": f"Bearer {srv.token}"},
                         timeout=30, trust_env=False)
    assert resolved.content == f.data
