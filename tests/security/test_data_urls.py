"""Class 1, cross-repo reads through dedup: data URLs serve exactly the byte ranges they were signed for.

Repo A holds a file whose xorb carries a shared part and a secret part. A writer of repo B, who knows only
the shared part, registers a file made of those chunks (dedup links it to A's xorb). B's reconstruction
must not hand out a URL that reads A's secret bytes: not without ``Range``, not outside the signed range,
not by suffix or repeated ranges, and on S3 not as a presigned URL for the whole object.
"""
from __future__ import annotations

import hashlib
import json

from xetfs.core.chunking import chunk_data, file_hash_of
from xetfs.core.hashing import sha256_to_shard, verification_hash
from xetfs.core.params import ChunkingParams
from xetfs.core.shard import FileInfo, FileTerm, Shard, serialize_upload_shard
from xetfs.testing.cas import build_file, cas_token, upload
from xetfs.testing.server import ServerHandle


def _b_links_to_a(srv: ServerHandle) -> tuple[bytes, int, str]:
    """-> (A's stored xorb, bytes of B's file in it, B's data URL for it)."""
    srv.create_repo("sec/a")
    srv.create_repo("sec/b")
    a = build_file(size=60_000, seed=101)
    assert upload(srv, a, cas_token(srv, "sec/a")) == (200, 200)
    chunks = chunk_data(a.data, ChunkingParams.tiny())[:20]          # the "shared" part B knows
    x = a.xorb
    shared = b"".join(c.data for c in chunks)
    info = FileInfo(file_hash_of(chunks), (FileTerm(x.hash, 0, 20, sum(x.chunk_sizes[:20])),),
                    (verification_hash(x.chunk_hashes[:20]),), sha256_to_shard(hashlib.sha256(shared).digest()))
    tok_b = cas_token(srv, "sec/b")
    status, _, body = srv.request("POST", "/v1/shards", serialize_upload_shard(Shard((info,), ())), token=tok_b)
    assert status == 200, body
    status, _, body = srv.request("GET", f"/v1/reconstructions/{info.file_hash}", token=tok_b)
    assert status == 200, body
    (entry,), = json.loads(body)["fetch_info"].values()
    return x.data, entry["url_range"]["end"] + 1, entry["url"]


def test_a_data_url_serves_only_its_signed_ranges(any_store_server: ServerHandle) -> None:
    srv = any_store_server
    whole, n, url = _b_links_to_a(srv)
    assert n < len(whole)

    def get(rng: str | None) -> tuple[int, bytes]:
        status, _, body = srv.request("GET", url, headers={"Range": rng} if rng else {}, token=None)
        return status, body

    assert get(f"bytes=0-{n - 1}") == (206, whole[:n])
    assert get(f"bytes=10-{n - 11}") == (206, whole[10:n - 10])
    status, body = get(None)
    assert status == 403 and whole[n:] not in body
    for rng in (f"bytes=0-{n}", f"bytes={n}-{len(whole) - 1}", "bytes=-100", "bytes=0-",
                f"bytes={n - 1}-{n + 5}", ",".join(["bytes=0-"] + ["0-"] * 199),
                ",".join([f"bytes=0-{n - 1}"] + [f"0-{n - 1}"] * 199), f"bytes=0-9,5-{n - 1}"):
        status, body = get(rng)
        assert status == 403, (rng, status)
        assert whole[n:] not in body
    status, body = get("bytes=0-9,100-199")
    assert status == 206 and whole[0:10] in body and whole[100:200] in body
