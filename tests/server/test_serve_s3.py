"""``xetfs serve --storage s3://… --s3-endpoint …`` on a real SeaweedFS (``weed mini``), driven by the real
hf_xet and by the ``xetfs upload`` / ``xetfs download`` CLI: byte-identical round trips, reconstruction URLs
that are presigned GETs on the store (the node serves no data bytes: ``xetfs_cas_data_bytes_served_total``
stays 0), ``--proxy-reads`` sending the bytes through the node again, nothing under ``DIR/objects``, and
one-line start-up errors for a bad store. One SeaweedFS serves the module; each node has its own prefix."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx

from xetfs.core.chunking import chunk_data, file_hash_of
from xetfs.server.stores import sigv4
from xetfs.server.auth import DATA_URL_TTL_S
from xetfs.server.stores.s3 import S3Storage
from xetfs.testing.deps import required
from xetfs.testing.hf import legacy_download, legacy_upload
from xetfs.testing.hub import serve_error, xet_token
from xetfs.testing.mount import SERVED
from xetfs.testing.server import ServerHandle, make_bytes, running_server
from xetfs.testing.services import SeaweedFSHandle, free_port


MiB = 1024 * 1024


def s3_args(weed: SeaweedFSHandle, prefix: str) -> list[str]:
    return ["--storage", weed.storage_url(prefix), "--s3-endpoint", weed.endpoint]


def store(weed: SeaweedFSHandle, prefix: str) -> S3Storage:
    creds = sigv4.Credentials(weed.access_key, weed.secret_key, weed.region)
    return S3Storage(weed.storage_url(prefix), endpoint=weed.endpoint, credentials=creds)


def no_local_objects(srv: ServerHandle) -> None:
    objects = srv.data_dir / "objects"
    assert not objects.exists() or not any(p.is_file() for p in objects.rglob("*")), list(objects.rglob("*"))


def xetfs_cli(srv: ServerHandle, *args: str) -> dict:  # type: ignore[type-arg]
    env = dict(os.environ, XETFS_ENDPOINT=srv.url, XETFS_TOKEN=srv.token)
    done = subprocess.run([sys.executable, "-m", "xetfs.cli.main", *args, "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_hf_xet_round_trip_reads_from_the_store(weed: SeaweedFSHandle, tmp_path: Path) -> None:
    required("hf_xet")
    items = [b"hello xet over s3\n", make_bytes("random", 3 * MiB, 11), make_bytes("float32", 2 * MiB, 12)]
    with running_server(tmp_path, extra_args=s3_args(weed, "hfxet"), env=weed.env()) as srv:
        srv.create_repo("t/demo")
        files = legacy_upload(srv, items)
        assert legacy_download(srv, files, tmp_path / "out") == items
        assert srv.metrics()[SERVED] == 0, "data bytes went through the node"

        # The fetch URLs are presigned ranged GETs of the xorb objects on the store, outliving the plan cache.
        token, _ = xet_token(srv, "t/demo", "read")
        status, _, body = srv.request("GET", f"/v2/reconstructions/{files[1][0]}", token=token)
        assert status == 200, body
        xorbs = json.loads(body)["xorbs"]
        s3 = store(weed, "hfxet")
        for xorb, entries in xorbs.items():
            assert s3.exists(f"xorbs/{xorb}")
            for entry in entries:
                url = entry["url"]
                assert url.startswith(f"{weed.endpoint}/{weed.bucket}/hfxet/xorbs/{xorb}?"), url
                assert dict(parse_qsl(urlsplit(url).query))["X-Amz-Expires"] == str(DATA_URL_TTL_S)
                r = entry["ranges"][0]["bytes"]
                resp = httpx.get(url, headers={"Range": f"bytes={r['start']}-{r['end']}"}, trust_env=False)
                assert resp.status_code == 206 and len(resp.content) == r["end"] - r["start"] + 1
                assert resp.content == s3.get_range(f"xorbs/{xorb}", r["start"], r["end"])
        s3.close()
        no_local_objects(srv)


def test_cli_round_trip_direct_then_proxied(weed: SeaweedFSHandle, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "weights.bin").write_bytes(make_bytes("float16", 2 * MiB, 21))
    (src / "noise.bin").write_bytes(make_bytes("random", 1 * MiB, 22))
    with running_server(tmp_path, extra_args=s3_args(weed, "cli"), env=weed.env()) as srv:
        xetfs_cli(srv, "upload", "t/cli", str(src), "--create-repo")
        xetfs_cli(srv, "download", "t/cli", "--to", str(tmp_path / "direct"))
        for name in ("weights.bin", "noise.bin"):
            assert (tmp_path / "direct" / name).read_bytes() == (src / name).read_bytes()
        m = srv.metrics()
        assert m["xetfs_cas_reconstructions_total"] > 0, "the files were not read through Xet"
        assert m[SERVED] == 0, "data bytes went through the node"
        no_local_objects(srv)

        srv.stop()                                  # same data and store, reads proxied by the node
        srv.extra_args.append("--proxy-reads")
        srv.start()
        xetfs_cli(srv, "download", "t/cli", "--to", str(tmp_path / "proxied"))
        for name in ("weights.bin", "noise.bin"):
            assert (tmp_path / "proxied" / name).read_bytes() == (src / name).read_bytes()
        assert srv.metrics()[SERVED] > MiB, "with --proxy-reads the node serves the data bytes"
        token, _ = xet_token(srv, "t/cli")
        file_hash = file_hash_of(chunk_data((src / "noise.bin").read_bytes()))
        status, _, body = srv.request("GET", f"/v1/reconstructions/{file_hash}", token=token)
        assert status == 200, body
        urls = [e["url"] for entries in json.loads(body)["fetch_info"].values() for e in entries]
        assert urls and all(u.startswith(f"{srv.url}/v1/data/") for u in urls), urls
        no_local_objects(srv)


def test_bad_store_is_one_line_at_start(weed: SeaweedFSHandle, tmp_path: Path) -> None:
    env = weed.env()
    assert "s3://BUCKET/PREFIX" in serve_error(tmp_path, ["--storage", "s3://Bad_Bucket/x"], env)
    assert "s3://BUCKET/PREFIX" in serve_error(tmp_path, ["--storage", "gs://bucket/x"], env)
    assert "unreachable" in serve_error(
        tmp_path, ["--storage", "s3://xetfs/x", "--s3-endpoint", f"http://127.0.0.1:{free_port()}"], env)
    assert "does not exist" in serve_error(
        tmp_path, ["--storage", "s3://no-such-bucket/x", "--s3-endpoint", weed.endpoint], env)
    assert "denied" in serve_error(tmp_path, ["--storage", weed.storage_url("x"), "--s3-endpoint", weed.endpoint],
                                   {**env, "AWS_SECRET_ACCESS_KEY": "wrong"})
    no_creds = {k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    assert "AWS_ACCESS_KEY_ID" in serve_error(
        tmp_path, ["--storage", weed.storage_url("x"), "--s3-endpoint", weed.endpoint], no_creds)
