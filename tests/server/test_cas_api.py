"""CAS API of a real ``xetfs serve`` over loopback (docs/protocol.md, "CAS API"): uploads and their
validation, reconstructions with Range, the signed data route, global dedup, status-code rules."""
from __future__ import annotations

import dataclasses
import json
import re
import time

import pytest

from xetfs.core.hashing import MerkleHash, hmac_hash, verification_hash
from xetfs.protocol.reconstruction import parse_reconstruction_json
from xetfs.core.shard import FileTerm, parse_shard
from xetfs.server.auth import Auth
from xetfs.core.params import GLOBAL_DEDUP_MODULUS
from xetfs.server.metadata.store import Metadata
from xetfs.testing.cas import assemble, build_file, cas_token, fetch_ranges, upload


def _xorb_status(srv, token, h) -> int:
    return srv.request("HEAD", f"/v1/xorbs/default/{h}", token=token)[0]


def test_xorb_upload_is_validated_and_idempotent(shared_server):
    srv, tok = shared_server, cas_token(shared_server)
    f = build_file(seed=11)
    before = srv.metrics()["xetfs_cas_xorb_upload_bytes_total"]
    status, _, body = srv.request("POST", f"/v1/xorbs/default/{f.xorb.hash}", f.xorb.data, token=tok)
    assert (status, json.loads(body)) == (200, {"was_inserted": True})
    status, _, body = srv.request("POST", f"/v1/xorbs/default/{f.xorb.hash}", f.xorb.data, token=tok)
    assert (status, json.loads(body)) == (200, {"was_inserted": False})
    assert srv.metrics()["xetfs_cas_xorb_upload_bytes_total"] == before + len(f.xorb.data)
    status, headers, _ = srv.request("HEAD", f"/v1/xorbs/default/{f.xorb.hash}", token=tok)
    assert status == 200 and int(headers["Content-Length"]) == len(f.xorb.data)


@pytest.mark.parametrize("damage", ["flip_payload", "truncate", "wrong_hash", "garbage"])
def test_bad_xorb_is_rejected_and_not_stored(shared_server, damage):
    srv, tok = shared_server, cas_token(shared_server)
    f = build_file(seed=20 + len(damage))
    body, name = bytearray(f.xorb.data), str(f.xorb.hash)
    if damage == "flip_payload":
        body[100] ^= 0xFF
    elif damage == "truncate":
        body = body[:-3]
    elif damage == "wrong_hash":
        name = str(build_file(seed=99).xorb.hash)
    else:
        body = bytearray(b"\x07" * 64)
    before = srv.metrics()["xetfs_cas_xorb_upload_bytes_total"]
    status, _, resp = srv.request("POST", f"/v1/xorbs/default/{name}", bytes(body), token=tok)
    assert status == 400 and "error" in json.loads(resp)
    assert _xorb_status(srv, tok, name) == 404
    assert srv.metrics()["xetfs_cas_xorb_upload_bytes_total"] == before
    assert not (srv.data_dir / "objects" / "xorbs" / name).exists()


def test_oversized_xorb_is_400(shared_server):
    srv, tok = shared_server, cas_token(shared_server)
    status, _, _ = srv.request("POST", f"/v1/xorbs/default/{'ab' * 32}", headers={"Content-Length": str(80 << 20)},
                               body=None, token=tok)
    assert status == 400


def _bad_shards(f):
    term = f.info.terms[0]
    n = len(f.xorb.chunk_hashes)
    return {
        "missing_xorb": dataclasses.replace(f.info, terms=(dataclasses.replace(term, xorb_hash=MerkleHash(b"\x01" * 32)),)),
        "out_of_bounds": dataclasses.replace(f.info, terms=(FileTerm(term.xorb_hash, 0, n + 1, term.unpacked_bytes),)),
        "unpacked_size": dataclasses.replace(f.info, terms=(dataclasses.replace(term, unpacked_bytes=term.unpacked_bytes - 1),)),
        "verification": dataclasses.replace(f.info, verification=(verification_hash(f.xorb.chunk_hashes[1:]),)),
        "file_hash": dataclasses.replace(f.info, file_hash=MerkleHash(b"\x02" * 32)),
        "no_verification": dataclasses.replace(f.info, verification=None),
    }


@pytest.mark.parametrize("kind", ["missing_xorb", "out_of_bounds", "unpacked_size", "verification", "file_hash",
                                  "no_verification"])
def test_bad_shard_is_rejected_without_trace(shared_server, kind):
    srv, tok = shared_server, cas_token(shared_server)
    f = build_file(seed=40)
    assert srv.request("POST", f"/v1/xorbs/default/{f.xorb.hash}", f.xorb.data, token=tok)[0] == 200
    bad = _bad_shards(f)[kind]
    for route in ("/v1/shards", "/v2/shards"):
        status, _, body = srv.request("POST", route, f.shard(bad), token=tok)
        assert status == 400, (kind, body)
    assert srv.request("GET", f"/v1/reconstructions/{bad.file_hash}", token=tok)[0] == 404
    assert not list((srv.data_dir / "objects").glob("shards/*")) or all(
        p.read_bytes() != f.shard(bad) for p in (srv.data_dir / "objects").glob("shards/*"))


def test_shard_listing_unknown_xorb_is_400(shared_server):
    srv, tok = shared_server, cas_token(shared_server)
    f = build_file(seed=41)
    status, _, body = srv.request("POST", "/v1/shards", f.shard(), token=tok)   # xorb never uploaded
    assert status == 400 and "not stored" in json.loads(body)["error"]


def test_reconstruction_v1_v2_ranges_and_verification(shared_server):
    srv, tok = shared_server, cas_token(shared_server)
    f = build_file(size=50_000, seed=50)
    assert upload(srv, f, tok) == (200, 200)
    before = srv.metrics()["xetfs_cas_reconstructions_total"]
    for version in (1, 2):
        url = f"/v{version}/reconstructions/{f.file_hash}"
        for rng, want in ((None, (0, 50_000)), ("bytes=1000-20999", (1000, 21_000)), ("bytes=49000-", (49_000, 50_000)),
                          ("bytes=0-255999999", (0, 50_000)), ("bytes=-500", (49_500, 50_000))):
            status, _, body = srv.request("GET", url, headers={"Range": rng} if rng else {}, token=tok)
            assert status == 200, body
            obj = json.loads(body)
            r = parse_reconstruction_json(obj)
            got = assemble(r, fetch_ranges(srv, r))
            assert got[r.offset_into_first_range:][:want[1] - want[0]] == f.data[want[0]:want[1]]
            for term in obj["terms"]:
                i, j = term["range"]["start"], term["range"]["end"]
                assert term["verification_hash"] == str(verification_hash(f.xorb.chunk_hashes[i:j]))
        for rng in ("bytes=50000-50001", "bytes=256000000-767999999", "bytes=768000000-1023999999"):
            assert srv.request("GET", url, headers={"Range": rng}, token=tok)[0] == 416
    assert srv.metrics()["xetfs_cas_reconstructions_total"] == before + 10, "2 versions x 5 ranges; a 416 is none"


def test_empty_and_missing_files(shared_server):
    srv, tok = shared_server, cas_token(shared_server)
    status, _, body = srv.request("GET", f"/v2/reconstructions/{'0' * 64}", token=tok)
    assert status == 200 and json.loads(body)["terms"] == []
    assert srv.request("GET", f"/v2/reconstructions/{'ab' * 32}", token=tok)[0] == 404
    assert srv.request("GET", "/v2/reconstructions/not-a-hash", token=tok)[0] == 400
    assert srv.request("HEAD", f"/v1/files/{'ab' * 32}", token=tok)[0] == 404


def test_multi_xorb_file_batch_reconstruction_and_head(shared_server):
    srv, tok = shared_server, cas_token(shared_server)
    f, g = build_file(size=70_000, seed=55, xorbs=3), build_file(size=5_000, seed=56)
    assert upload(srv, f, tok) == (200, 200) and upload(srv, g, tok) == (200, 200)
    status, headers, _ = srv.request("HEAD", f"/v1/files/{f.file_hash}", token=tok)
    assert status == 200 and headers["Content-Length"] == str(len(f.data))
    obj = json.loads(srv.request("GET", f"/v2/reconstructions/{f.file_hash}", headers={"Range": "bytes=20000-50000"},
                                 token=tok)[2])
    r = parse_reconstruction_json(obj)
    assert len(r.terms) >= 2 and assemble(r, fetch_ranges(srv, r))[r.offset_into_first_range:][:30_001] == f.data[20_000:50_001]
    status, _, body = srv.request("GET", f"/v1/reconstructions?file_id={f.file_hash}&file_id={g.file_hash}", token=tok)
    batch = json.loads(body)
    assert status == 200 and set(batch["files"]) == {str(f.file_hash), str(g.file_hash)}
    assert set(batch["fetch_info"]) == {str(x.hash) for x in f.xorbs + g.xorbs}


def test_data_route_ranges_signatures_and_expiry(shared_server):
    srv, tok = shared_server, cas_token(shared_server)
    f = build_file(size=30_000, seed=60)
    assert upload(srv, f, tok) == (200, 200)
    obj = json.loads(srv.request("GET", f"/v1/reconstructions/{f.file_hash}", token=tok)[2])
    url = next(iter(obj["fetch_info"].values()))[0]["url"]
    whole = f.xorb.data
    before = srv.metrics()["xetfs_cas_data_bytes_served_total"]
    status, headers, body = srv.request("GET", url, headers={"Range": "bytes=10-99"}, token=None)
    assert (status, body, headers["Content-Range"]) == (206, whole[10:100], f"bytes 10-99/{len(whole)}")
    status, headers, body = srv.request("GET", url, headers={"Range": "bytes=0-9,100-199,50-59"}, token=None)
    assert status == 206 and headers["Content-Type"].startswith("multipart/byteranges")
    boundary = headers["Content-Type"].split("boundary=")[1]
    parts = [p for p in body.split(f"--{boundary}".encode()) if p.strip(b"-\r\n")]
    assert [p.split(b"\r\n\r\n", 1)[1][:-2] for p in parts] == [whole[0:10], whole[100:200], whole[50:60]]
    assert re.search(rb"Content-Range: bytes 100-199/", parts[1])
    tampered = url.replace("s=", "s=0") if "s=0" not in url else url.replace("s=0", "s=1")
    assert srv.request("GET", tampered, token=None)[0] == 403
    assert srv.request("GET", url.split("?")[0], token=None)[0] == 403
    auth = Auth(srv.data_dir, Metadata(srv.data_dir / "metadata.sqlite3"), "unused")
    exp = int(time.time()) - 10
    whole_range = f"0-{len(whole) - 1}"
    expired = (f"{srv.url}/v1/data/{f.xorb.hash}?e={exp}&r={whole_range}"
               f"&s={auth.sign_data(str(f.xorb.hash), exp, whole_range)}")
    assert srv.request("GET", expired, token=None)[0] == 403
    assert srv.metrics()["xetfs_cas_data_bytes_served_total"] == before + 90 + 120, "refused URLs serve nothing"


def test_global_dedup_answer_is_a_full_keyed_shard(shared_server):
    srv, tok = shared_server, cas_token(shared_server)
    f = build_file(seed=70)
    assert upload(srv, f, tok) == (200, 200)
    first = f.xorb.chunk_hashes[0]
    for prefix in ("default", "default-merkledb"):
        status, _, body = srv.request("GET", f"/v1/chunks/{prefix}/{first}", token=tok)
        assert status == 200
        shard = parse_shard(body)
        assert shard.footer is not None and not shard.footer.hmac_key.is_zero()
        (x,) = shard.xorbs
        assert x.xorb_hash == f.xorb.hash and x.num_bytes_on_disk == len(f.xorb.data)
        assert x.chunks[0].chunk_hash == hmac_hash(first, shard.footer.hmac_key)
        assert [c.unpacked_bytes for c in x.chunks] == list(f.xorb.chunk_sizes)
    second = f.xorb.chunk_hashes[1]       # not a file start: indexed only when its hash is eligible (hash % 1024 == 0)
    want = 200 if second.modulo(GLOBAL_DEDUP_MODULUS) == 0 else 404
    assert srv.request("GET", f"/v1/chunks/default/{second}", token=tok)[0] == want
    # a file-start chunk: the answer lists every xorb of that file, unkeyed hashes never leak
    g = build_file(size=60_000, seed=71, xorbs=3)
    assert upload(srv, g, tok) == (200, 200)
    shard = parse_shard(srv.request("GET", f"/v1/chunks/default/{g.xorb.chunk_hashes[0]}", token=tok)[2])
    assert [x.xorb_hash for x in shard.xorbs] == sorted((x.hash for x in g.xorbs), key=str)
    assert all(c.chunk_hash not in g.xorbs[1].chunk_hashes for c in shard.xorbs[1].chunks)
    assert srv.request("GET", f"/v1/chunks/default/{'cd' * 32}", token=tok)[0] == 404
    assert srv.request("GET", f"/v1/chunks/other/{first}", token=tok)[0] == 404


def test_status_code_rules(shared_server):
    srv, tok = shared_server, cas_token(shared_server)
    f = build_file(seed=80)
    assert srv.request("POST", f"/v1/xorbs/default/{f.xorb.hash}", f.xorb.data, token=tok)[0] == 200
    grant = json.dumps({"length": len(f.xorb.data), "checksum": {"algo": "crc64nvme", "value": "1"}}).encode()
    for h in (f.xorb.hash, "ab" * 32):     # never 200, even for a stored xorb the client may not re-send
        assert srv.request("POST", f"/v1/xorb-grants/default/{h}", grant, token=tok)[0] == 404
    for method, path in (("GET", "/v2/shards"), ("GET", "/v1/xorbs/default/" + "ab" * 32), ("PUT", "/v1/shards"),
                         ("GET", "/nope"), ("POST", "/v1/xorb-commits/default/x/grant/g"), ("DELETE", "/health")):
        status, _, body = srv.request(method, path, b"" if method in ("POST", "PUT") else None, token=tok)
        assert status == 404 and "error" in json.loads(body), (method, path, status)
    assert srv.request("POST", "/v1/telemetry", b'{"event":"x"}', token=tok)[0] == 200


def test_cas_auth(shared_server):
    srv = shared_server
    f = build_file(seed=90)
    read = cas_token(srv, scope="read")
    path = f"/v1/xorbs/default/{f.xorb.hash}"
    assert srv.request("POST", path, f.xorb.data, token=None)[0] == 401
    assert srv.request("POST", path, f.xorb.data, token="xcas.bogus.token")[0] == 401
    assert srv.request("POST", path, f.xorb.data, token=read)[0] == 403
    assert srv.request("POST", "/v1/shards", f.shard(), token=read)[0] == 403
    forged = read.rsplit(".", 1)[0] + "." + "A" * 43
    assert srv.request("GET", f"/v1/reconstructions/{'0' * 64}", token=forged)[0] == 401
    assert srv.request("GET", f"/v1/reconstructions/{'0' * 64}", token=read)[0] == 200
