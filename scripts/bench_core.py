"""Benchmark the core kernels; prints ONE JSON object of ratios against a same-run baseline
(docs/architecture.md, "Performance").

- chunk + hash throughput of ``xetfs hash`` (``xetfs.write.digest.digest_file``: read, CDC, chunk hashes,
  file hash) against ``hf_xet.hash_files`` on the same 256 MiB random file and 256 MiB float16 tensor file
  (normal values), best of N runs each, and the ratio xetfs / hf_xet;
- per-chunk LZ4 and BG4-LZ4 MB/s and compression ratio on the tensor file's chunks: ``record_*`` through
  ``xetfs.core.xorb.encode_chunk`` / ``decode_chunks`` with the scheme forced (a chunk that does not shrink is
  stored raw, see ``compressed_chunk_fraction``), ``codec_*`` the same LZ4 frame / byte grouping without that
  fallback (what decoding costs when a chunk is stored compressed).

Usage: .venv/bin/python scripts/bench_core.py [--size-mib 256] [--runs 3]. Files live in a temp dir, removed after.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

MiB = 1024 * 1024


def _write_random(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for _ in range(0, size, 16 * MiB):
            f.write(os.urandom(min(16 * MiB, size - f.tell())))


def _write_float16(path: Path, size: int) -> None:
    rng = np.random.default_rng(1234)
    with open(path, "wb") as f:
        for _ in range(0, size, 16 * MiB):
            n = min(16 * MiB, size - f.tell()) // 2
            f.write(rng.standard_normal(n, dtype=np.float32).astype(np.float16).tobytes())


def _best_seconds(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _mbps(size: int, seconds: float) -> float:
    return round(size / seconds / 1e6, 1)


def bench_hash(path: Path, runs: int) -> dict[str, object]:
    import hf_xet

    from xetfs.write.digest import digest_file

    size = path.stat().st_size
    t_x, ours = _best_seconds(lambda: digest_file(str(path)), runs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        t_h, theirs = _best_seconds(lambda: hf_xet.hash_files([str(path)]), runs)
    return {"xetfs_MBps": _mbps(size, t_x), "hf_xet_MBps": _mbps(size, t_h), "ratio": round(t_h / t_x, 3),
            "same_hash": ours.hash == theirs[0].hash, "chunks": ours.chunks}


def bench_compression(path: Path, runs: int) -> dict[str, object]:
    """Per-chunk records through xorb.encode_chunk / decode_chunks, and the forced codec (no raw fallback)."""
    import lz4.frame

    from xetfs.core.chunking import Chunker
    from xetfs.core.compression import CompressionScheme, bg4_join, bg4_split, lz4_frame
    from xetfs.core.xorb import decode_chunks, encode_chunk

    chunker = Chunker()
    data = path.read_bytes()
    chunks = [c.data for c in chunker.feed(data) + chunker.finish()]
    size = len(data)
    out: dict[str, object] = {"via": "xetfs.core.xorb.encode_chunk/decode_chunks", "chunks": len(chunks)}
    codecs = {
        CompressionScheme.LZ4: (lz4_frame, lz4.frame.decompress),
        CompressionScheme.BG4_LZ4: (lambda c: lz4_frame(bg4_split(c)),
                                    lambda p: bg4_join(lz4.frame.decompress(p))),
    }
    for scheme, (compress, decompress) in codecs.items():
        t_enc, records = _best_seconds(lambda: [encode_chunk(c, scheme) for c in chunks], runs)
        body = b"".join(records)  # type: ignore[arg-type]
        t_dec, decoded = _best_seconds(lambda: decode_chunks(body), runs)
        assert b"".join(decoded) == data, "xorb round trip failed"  # type: ignore[arg-type]
        t_cc, payloads = _best_seconds(lambda: [compress(c) for c in chunks], runs)
        t_cd, plain = _best_seconds(lambda: [decompress(p) for p in payloads], runs)  # type: ignore[union-attr]
        assert plain == chunks, "codec round trip failed"
        stored = sum(1 for r in records if r[4] != CompressionScheme.NONE)  # type: ignore[union-attr]
        out[scheme.name] = {
            "record_encode_MBps": _mbps(size, t_enc), "record_decode_MBps": _mbps(size, t_dec),
            "record_ratio": round(size / (len(body) - 8 * len(chunks)), 4),
            "compressed_chunk_fraction": round(stored / len(chunks), 3),
            "codec_compress_MBps": _mbps(size, t_cc), "codec_decompress_MBps": _mbps(size, t_cd),
            "codec_ratio": round(size / sum(map(len, payloads)), 4),  # type: ignore[arg-type]
        }
    t_auto, auto = _best_seconds(lambda: [encode_chunk(c) for c in chunks], runs)
    out["auto"] = {"encode_MBps": _mbps(size, t_auto),
                   "schemes": {s.name: sum(1 for r in auto if r[4] == s) for s in CompressionScheme}}  # type: ignore[union-attr]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from xetfs.core.chunking import BACKEND

    size = args.size_mib * MiB
    result: dict[str, object] = {"size_bytes": size, "chunking_backend": BACKEND, "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="xetfs-bench-") as tmp:
        random_path, tensor_path = Path(tmp) / "random.bin", Path(tmp) / "float16.bin"
        _write_random(random_path, size)
        _write_float16(tensor_path, size)
        result["hash_random"] = bench_hash(random_path, args.runs)
        result["hash_float16"] = bench_hash(tensor_path, args.runs)
        result["compression_float16"] = bench_compression(tensor_path, args.runs)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
