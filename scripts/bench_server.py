#!/usr/bin/env python3
"""Benchmark ``xetfs serve``; prints ONE JSON object (ratios against baselines measured in the same run).

1. hf_xet upload + download MB/s of a SIZE file (default 1 GiB, random bytes) against ``xetfs serve``.
2. Data-route throughput: ``curl -r a-b`` of 64 MiB ranges (capped at the xorb size) of a stored xorb through a
   range-signed data URL, vs a plain aiohttp ``FileResponse`` (sendfile) server on the same file; ratio target
   >= 0.8. Also ``/resolve`` of the first 256 MiB of the committed file (server-side reconstruction, every chunk
   verified) against the same sendfile baseline (no target: it decodes and hashes every chunk).
3. ``xetfs upload`` MB/s vs hf_xet upload MB/s of the same file, each into a fresh server (null when
   ``xetfs.cli.upload_cmd`` is not available).

Usage: .venv/bin/python scripts/bench_server.py [--size-mib 1024] [--repeats 5]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xetfs.testing.hub import xet_token  # noqa: E402
from xetfs.testing.server import ServerHandle, running_server  # noqa: E402

MiB = 1024 * 1024
RANGE_BYTES = 64 * MiB


def write_random(path: Path, size: int) -> None:
    import numpy as np

    rng = np.random.default_rng(42)
    with open(path, "wb") as f:
        for off in range(0, size, 64 * MiB):
            f.write(rng.bytes(min(64 * MiB, size - off)))


def hf_xet_upload(srv: ServerHandle, path: Path) -> tuple[str, int, float]:
    import hf_xet

    token, exp = xet_token(srv, "bench/demo", "write")
    t0 = time.perf_counter()
    with hf_xet.XetSession().new_upload_commit(endpoint=srv.url, token=token, token_expiry_unix_secs=exp) as c:
        up = c.start_upload_file(str(path))
    info = up.result().xet_info
    return info.hash, info.file_size, time.perf_counter() - t0


def hf_xet_download(srv: ServerHandle, file_hash: str, size: int, dest: Path) -> float:
    import hf_xet

    token, exp = xet_token(srv, "bench/demo", "read")
    t0 = time.perf_counter()
    group = hf_xet.XetSession().new_file_download_group(endpoint=srv.url, token=token, token_expiry_unix_secs=exp)
    group.start_download_file(hf_xet.XetFileInfo(file_hash, size), str(dest))
    group.wait_to_finish()
    return time.perf_counter() - t0


def curl_speed(url: str, start: int, end_incl: int) -> float:
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-r", f"{start}-{end_incl}", url, "-w", "%{speed_download}"],
                         capture_output=True, text=True, check=True)
    return float(out.stdout)


def median_speed(url: str, size: int, repeats: int) -> float:
    end = min(size, RANGE_BYTES) - 1
    curl_speed(url, 0, end)                       # warm the page cache
    return statistics.median(curl_speed(url, 0, end) for _ in range(repeats))


PLAIN_SERVER = textwrap.dedent("""
    import sys
    from aiohttp import web
    path = sys.argv[1]
    async def handle(request):
        return web.FileResponse(path)
    app = web.Application()
    app.router.add_get("/f", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None)
""")


def plain_sendfile_speed(path: Path, repeats: int) -> float:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", PLAIN_SERVER, str(path), str(port)])
    try:
        for _ in range(200):
            if subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/f", "-r", "0-0"]).returncode == 0:
                break
            time.sleep(0.05)
        return median_speed(f"http://127.0.0.1:{port}/f", path.stat().st_size, repeats)
    finally:
        proc.terminate()
        proc.wait()


def data_route_bench(srv: ServerHandle, file_hash: str, repeats: int) -> dict[str, object]:
    token, _ = xet_token(srv, "bench/demo", "read")
    status, _, body = srv.request("GET", f"/v1/reconstructions/{file_hash}", token=token)
    assert status == 200, body
    fetch = json.loads(body)["fetch_info"]
    xorb = max(fetch, key=lambda x: (srv.data_dir / "objects" / "xorbs" / x).stat().st_size)
    path = srv.data_dir / "objects" / "xorbs" / xorb
    xetfs_bps = median_speed(fetch[xorb][0]["url"], path.stat().st_size, repeats)
    plain_bps = plain_sendfile_speed(path, repeats)
    return {"xorb_bytes": path.stat().st_size, "range_bytes": min(RANGE_BYTES, path.stat().st_size),
            "xetfs_MBps": round(xetfs_bps / 1e6, 1), "plain_sendfile_MBps": round(plain_bps / 1e6, 1),
            "ratio": round(xetfs_bps / plain_bps, 3), "plain_bps": plain_bps}


def resolve_bench(srv: ServerHandle, src: Path, repeats: int, plain_bps: float) -> dict[str, object]:
    """``/resolve`` MB/s (chunk-verified reconstruction) of the committed file vs the sendfile baseline."""
    import hashlib

    digest = hashlib.sha256()
    with open(src, "rb") as f:
        while block := f.read(16 * MiB):
            digest.update(block)
    op = {"key": "lfsFile", "value": {"path": "big.bin", "algo": "sha256", "oid": digest.hexdigest(),
                                      "size": src.stat().st_size}}
    body = "\n".join(json.dumps(x) for x in [{"key": "header", "value": {"summary": "bench"}}, op]).encode()
    status, _, answer = srv.request("POST", "/api/models/bench/demo/commit/main", body,
                                    {"Content-Type": "application/x-ndjson"})
    assert status == 200, answer
    url = f"{srv.url}/bench/demo/resolve/main/big.bin"
    end = min(src.stat().st_size, 256 * MiB) - 1

    def one() -> float:
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-H", f"Authorization: Bearer {srv.token}", "-r",
                              f"0-{end}", url, "-w", "%{speed_download}"], capture_output=True, text=True, check=True)
        return float(out.stdout)
    bps = statistics.median(one() for _ in range(repeats))
    return {"range_bytes": end + 1, "resolve_MBps": round(bps / 1e6, 1), "ratio_vs_sendfile": round(bps / plain_bps, 3)}


def xetfs_upload_vs_hf_xet(tmp: Path, path: Path, hf_xet_upload_s: float) -> dict[str, object] | None:
    """xetfs upload MB/s (through the CLI, into a fresh server) vs hf_xet upload MB/s of the same file."""
    if importlib.util.find_spec("xetfs.cli.upload_cmd") is None:
        return None
    with running_server(tmp / "srv-xetfs-upload") as srv:
        srv.create_repo("bench/demo")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "xetfs.cli.main", "upload", "bench/demo", str(path), "--endpoint", srv.url,
                        "--token", srv.token], check=True, capture_output=True)
        seconds = time.perf_counter() - t0
    size = path.stat().st_size
    return {"xetfs_upload_MBps": round(size / seconds / 1e6, 1), "hf_xet_upload_MBps": round(size / hf_xet_upload_s / 1e6, 1),
            "ratio": round(hf_xet_upload_s / seconds, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("HF_XET_TELEMETRY_ENABLED", "false")
    with tempfile.TemporaryDirectory(prefix="xetfs-bench-") as d:
        tmp = Path(d)
        os.environ["HF_HOME"] = str(tmp / "hf_home")
        src = tmp / "file.bin"
        write_random(src, args.size_mib * MiB)
        result: dict[str, object] = {"file_bytes": src.stat().st_size}
        with running_server(tmp / "srv") as srv:
            srv.create_repo("bench/demo")
            file_hash, size, up_s = hf_xet_upload(srv, src)
            down_s = hf_xet_download(srv, file_hash, size, tmp / "down.bin")
            assert (tmp / "down.bin").stat().st_size == size
            (tmp / "down.bin").unlink()
            result["hf_xet"] = {"upload_MBps": round(size / up_s / 1e6, 1), "download_MBps": round(size / down_s / 1e6, 1)}
            result["data_route"] = data_route_bench(srv, file_hash, args.repeats)
            plain_bps = float(result["data_route"].pop("plain_bps"))  # type: ignore[union-attr]
            result["resolve"] = resolve_bench(srv, src, args.repeats, plain_bps)
        os.environ["HF_HOME"] = str(tmp / "hf_home2")
        result["xetfs_upload_vs_hf_xet"] = xetfs_upload_vs_hf_xet(tmp, src, up_s)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
