"""Differential test: ``xetfs hash`` equals the real ``hf_xet.hash_files`` (1.8.0) on generated inputs —
random, zeros, repeating patterns, float16/float32 tensors, text — from 0 B to 8 MiB, including the sizes
around the chunk limits (8 KiB min, 64 KiB target, 128 KiB max) and the CLI's 8 MiB read block.
The sha256 printed by ``--json`` is checked against hashlib, the chunk count against ``chunk_data``."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import blake3
import numpy as np
import pytest

from xetfs.write.digest import READ_BLOCK_BYTES
from xetfs.cli.main import main
from xetfs.core.chunking import chunk_boundaries
from xetfs.testing.deps import required

hf_xet = required("hf_xet")

MiB = 1024 * 1024


def _random(n: int, seed: str) -> bytes:
    return blake3.blake3(seed.encode()).digest(length=n) if n else b""


def _repeat(unit: bytes, n: int) -> bytes:
    return (unit * (n // len(unit) + 1))[:n]


def _tensor(dtype: str, n_values: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n_values).astype(dtype).tobytes()


def _text(n: int) -> bytes:
    words = [w.encode() for w in "the quick brown fox jumps over a lazy dog xet chunk shard xorb file".split()]
    rnd = _random(n // 4 + 16, "text")
    out = bytearray()
    i = 0
    while len(out) < n:
        out += words[rnd[i % len(rnd)] % len(words)] + (b"\n" if rnd[(i + 1) % len(rnd)] < 20 else b" ")
        i += 1
    return bytes(out[:n])


EDGE_SIZES = [0, 1, 13, 63, 64, 65, 8127, 8128, 8191, 8192, 8193, 65535, 65536, 65537,
              131071, 131072, 131073, 262144, 262145]


def _cases() -> dict[str, Callable[[], bytes]]:
    cases: dict[str, Callable[[], bytes]] = {}
    for n in EDGE_SIZES:
        cases[f"random_{n}"] = lambda n=n: _random(n, f"r{n}")
    for n in (8191, 8192, 8193, 131071, 131072, 131073, MiB, 3 * MiB + 7):
        cases[f"zeros_{n}"] = lambda n=n: bytes(n)
    cases["ff_200000"] = lambda: b"\xff" * 200000
    cases["abc_300001"] = lambda: _repeat(b"abc", 300001)
    cases["period_64_500000"] = lambda: _repeat(_random(64, "p64"), 500000)
    cases["period_977_700000"] = lambda: _repeat(_random(977, "p977"), 700000)
    cases["period_8192_1M"] = lambda: _repeat(_random(8192, "p8k"), MiB)
    cases["period_70000_1M"] = lambda: _repeat(_random(70000, "p70k"), MiB)  # longer than a chunk: dedup-like
    cases["i_mod_251_500000"] = lambda: bytes(i % 251 for i in range(500000))
    cases["low_entropy_600000"] = lambda: bytes(b & 3 for b in _random(600000, "low"))
    cases["mixed_zero_gap"] = lambda: _random(100000, "m1") + bytes(300000) + _random(100000, "m2")
    cases["random_1M"] = lambda: _random(MiB, "1m")
    cases["random_3M_plus_1"] = lambda: _random(3 * MiB + 1, "3m")
    cases["random_8M_minus_1"] = lambda: _random(READ_BLOCK_BYTES - 1, "8m-")
    cases["random_8M"] = lambda: _random(READ_BLOCK_BYTES, "8m")
    cases["random_8M_plus_1"] = lambda: _random(READ_BLOCK_BYTES + 1, "8m+")
    cases["float16_1M"] = lambda: _tensor("float16", MiB // 2, 1)
    cases["float16_4M"] = lambda: _tensor("float16", 2 * MiB, 2)
    cases["float32_1M"] = lambda: _tensor("float32", MiB // 4, 3)
    cases["float32_6M"] = lambda: _tensor("float32", 6 * MiB // 4, 4)
    cases["float32_odd"] = lambda: _tensor("float32", 33333, 5)
    cases["float16_zero_padded"] = lambda: _tensor("float16", 100000, 6) + bytes(150000)
    cases["text_13"] = lambda: b"Hello, World!"
    cases["text_200000"] = lambda: _text(200000)
    cases["text_2M"] = lambda: _text(2 * MiB)
    cases["json_lines"] = lambda: b"".join(
        json.dumps({"i": i, "v": i * 0.5, "s": "x" * (i % 17)}).encode() + b"\n" for i in range(20000))
    return cases


CASES = _cases()


def test_enough_cases() -> None:
    assert len(CASES) >= 50


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hash_inputs")
    out = {}
    for name, make in CASES.items():
        path = root / name
        path.write_bytes(make())
        out[name] = path
    return out


def _hf_xet_hashes(paths: list[Path]) -> list[tuple[str, int]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        infos = hf_xet.hash_files([str(p) for p in paths])
    return [(info.hash, info.file_size) for info in infos]


def _xetfs_json(paths: list[Path], capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    assert main(["hash", "--json", *map(str, paths)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_hash_equals_hf_xet(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    paths = list(files.values())
    expected = _hf_xet_hashes(paths)
    got = _xetfs_json(paths, capsys)
    assert len(got) == len(paths)
    for path, (want_hash, want_size), row in zip(paths, expected, got):
        assert row["path"] == str(path)
        assert (row["hash"], row["size"]) == (want_hash, want_size), path.name


def test_json_sha256_size_and_chunks(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    names = ["random_0", "random_8193", "zeros_131073", "float16_4M", "random_8M_plus_1", "text_2M"]
    rows = _xetfs_json([files[n] for n in names], capsys)
    for name, row in zip(names, rows):
        data = files[name].read_bytes()
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["size"] == len(data)
        assert row["chunks"] == len(chunk_boundaries(data))


def test_plain_output_is_sha256sum_like(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    paths = [files["text_13"], files["random_0"]]
    assert main(["hash", *map(str, paths)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"2028081f8fc86d0698acffb85c902a410549c3ffcc45a0b6ed666e1032d17157  {paths[0]}",
        f"{'0' * 64}  {paths[1]}",
    ]


def test_chunks_command_lists_offsets(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = files["random_1M"]
    data = path.read_bytes()
    assert main(["chunks", "--json", str(path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ends = chunk_boundaries(data)
    assert [r["offset"] + r["size"] for r in rows] == ends
    assert [r["index"] for r in rows] == list(range(len(ends)))
    assert main(["chunks", str(path)]) == 0
    first = capsys.readouterr().out.splitlines()[0].split()
    assert first == ["0", str(ends[0]), rows[0]["hash"]]


def test_bad_input_is_one_line_error(tmp_path: Path, files: dict[str, Path]) -> None:
    missing = tmp_path / "missing"
    proc = subprocess.run([sys.executable, "-m", "xetfs.cli.main", "hash", str(files["text_13"]), str(missing),
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [f"2028081f8fc86d0698acffb85c902a410549c3ffcc45a0b6ed666e1032d17157  "
                                        f"{files['text_13']}"]
    errors = proc.stderr.splitlines()
    assert len(errors) == 2 and "No such file" in errors[0] and "Is a directory" in errors[1]
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "xetfs.cli.main", "chunks", str(missing)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1
