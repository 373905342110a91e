"""``xetfs prefetch`` and ``xetfs cache`` against a real ``xetfs serve`` (no mount): what ls/du show, a damaged
chunk entry found and removed by verify, prune and clear sparing pins, and bundles that refuse tampering."""
from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from xetfs.testing.files import write_tree
from xetfs.testing.server import make_bytes

MiB = 1024 * 1024
FILES = {"a.bin": make_bytes("random", 3 * MiB, 1), "d/b.bin": make_bytes("random", 2 * MiB, 2),
         "README.md": b"# demo\n"}


@pytest.fixture
def seeded(repo: str, cli: Callable[..., Any], tmp_path: Path) -> str:
    write_tree(tmp_path / "src", FILES)
    assert cli("upload", repo, str(tmp_path / "src")).code == 0
    return repo


def _json(result: Any) -> Any:
    assert result.code == 0, result.err
    return json.loads(result.out)


def _files(cli: Callable[..., Any], cache: Path) -> dict[str, dict[str, Any]]:
    (rev,) = _json(cli("cache", "ls", "--cache-dir", str(cache), "--json"))
    return {f["path"]: f for f in rev["files"]}


def test_prefetch_then_ls_du_and_verify_finding_a_damaged_entry(seeded: str, cli: Callable[..., Any],
                                                               tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _json(cli("prefetch", seeded, "a.bin", "--pin", "--cache-dir", str(cache), "--json"))
    assert (first["files"], first["bytes"], first["pinned"], first["already_cached"]) == (1, 3 * MiB, 1, 0)
    assert first["fetched_bytes"] >= 3 * MiB
    every = _json(cli("prefetch", seeded, "--cache-dir", str(cache), "--json"))
    assert (every["files"], every["already_cached"], every["regular_files"], every["uncached_files"]) == (2, 1, 1, 0)
    assert _json(cli("prefetch", seeded, "--cache-dir", str(cache), "--json"))["fetched_bytes"] == 0

    files = _files(cli, cache)
    assert {p: (f["cached_bytes"], f["size"], f["pinned"]) for p, f in files.items()} == {
        "a.bin": (3 * MiB, 3 * MiB, True), "d/b.bin": (2 * MiB, 2 * MiB, False), "README.md": (7, 7, False)}
    du = _json(cli("cache", "du", "--cache-dir", str(cache), "--json"))
    assert du["chunk_bytes"] >= 5 * MiB and du["layouts"] == 2 and du["snapshots"] == 1
    assert (du["regular_files"], du["regular_bytes"]) == (1, 7)
    assert 3 * MiB <= du["pinned_bytes"] < 5 * MiB and du["pinned_files"] == 1
    assert _json(cli("cache", "verify", "--cache-dir", str(cache), "--json"))["bad"] == []

    entries = sorted((cache / "chunks").rglob("*-*"), key=lambda p: p.stat().st_size)
    victim = entries[0]                     # d/b.bin's entry (the smaller file)
    raw = bytearray(victim.read_bytes())
    raw[-1000] ^= 0x40                      # a byte of chunk data, not of the header
    victim.write_bytes(raw)
    readme = next(p for p in (cache / "regular").rglob("*") if p.is_file())
    readme.write_bytes(b"# DEMO\n")             # same size, other bytes: not its git blob id
    dry = cli("cache", "verify", "--cache-dir", str(cache), "--dry-run")
    assert dry.code == 1 and f"damaged: chunks/{victim.parent.name}/{victim.name}" in dry.out and victim.exists()
    found = cli("cache", "verify", "--cache-dir", str(cache), "--json")
    assert found.code == 1 and json.loads(found.out)["bad"] == [f"chunks/{victim.parent.name}/{victim.name}",
                                                                f"regular/{readme.parent.name}/{readme.name}"]
    assert not victim.exists() and not readme.exists()
    assert _json(cli("cache", "verify", "--cache-dir", str(cache), "--json"))["bad"] == []
    files = _files(cli, cache)
    assert files["d/b.bin"]["cached_bytes"] < 2 * MiB and files["README.md"]["cached_bytes"] == 0
    assert _json(cli("cache", "du", "--cache-dir", str(cache), "--json"))["chunk_bytes"] < du["chunk_bytes"]

    again = _json(cli("prefetch", seeded, "--cache-dir", str(cache), "--json"))   # refetches what went
    assert again["already_cached"] == 1 and 0 < again["fetched_bytes"] <= 2 * MiB + 4096
    assert {p: f["cached_bytes"] for p, f in _files(cli, cache).items()} == {"a.bin": 3 * MiB, "d/b.bin": 2 * MiB,
                                                                            "README.md": 7}


def test_prune_and_clear_spare_pins(seeded: str, cli: Callable[..., Any], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _json(cli("prefetch", seeded, "a.bin", "--pin", "--cache-dir", str(cache), "--json"))
    _json(cli("prefetch", seeded, "--cache-dir", str(cache), "--json"))
    pruned = _json(cli("cache", "prune", "--max-size", "0", "--cache-dir", str(cache), "--json"))
    assert pruned["entries"] == 2 and pruned["pinned_bytes"] >= 3 * MiB     # d/b.bin's entry and layout
    files = _files(cli, cache)
    assert files["a.bin"]["cached_bytes"] == 3 * MiB and files["d/b.bin"]["cached_bytes"] == 0

    assert cli("cache", "unpin", seeded, "--cache-dir", str(cache)).out.strip() == "unpinned 1 files"
    assert _json(cli("cache", "prune", "--older-than", "0", "--cache-dir", str(cache), "--json"))["entries"] == 2

    _json(cli("prefetch", seeded, "--pin", "--cache-dir", str(cache), "--json"))
    assert _json(cli("cache", "clear", "--cache-dir", str(cache), "--json"))["freed_bytes"] >= 5 * MiB
    assert _json(cli("cache", "ls", "--cache-dir", str(cache), "--json")) == []
    assert len(list((cache / "pins").rglob("*.pin"))) == 2                 # pins stay ...
    _json(cli("cache", "clear", "--pins", "--cache-dir", str(cache), "--json"))
    assert not list(cache.rglob("*.pin"))                                  # ... unless --pins


def test_export_import_round_trip_and_tampered_bundles(seeded: str, cli: Callable[..., Any],
                                                      tmp_path: Path) -> None:
    cache, bundle = tmp_path / "cache", tmp_path / "rev.tar"
    write_tree(tmp_path / "more", {"copy-of-a.bin": FILES["a.bin"], "empty.txt": b""})   # a file twice, an empty one
    assert cli("upload", seeded, str(tmp_path / "more")).code == 0
    refused = cli("cache", "export", seeded, "-o", str(bundle), "--cache-dir", str(tmp_path))
    assert refused.code == 1 and "no snapshot" in refused.err
    _json(cli("prefetch", seeded, "a.bin", "--cache-dir", str(cache), "--json"))
    partial = cli("cache", "export", seeded, "-o", str(bundle), "--cache-dir", str(cache))
    assert partial.code == 1 and "not wholly cached" in partial.err and not bundle.exists()
    _json(cli("prefetch", seeded, "--cache-dir", str(cache), "--json"))
    out = _json(cli("cache", "export", seeded, "-o", str(bundle), "--cache-dir", str(cache), "--json"))
    assert (out["files"], out["bytes"]) == (3, 8 * MiB)

    fresh = tmp_path / "fresh"
    got = _json(cli("cache", "import", str(bundle), "--pin", "--cache-dir", str(fresh), "--json"))
    assert got["commit"] == out["commit"]
    files = _files(cli, fresh)
    assert files["a.bin"]["cached_bytes"] == 3 * MiB and files["a.bin"]["pinned"] and files["d/b.bin"]["pinned"]
    assert files["README.md"]["cached_bytes"] == 7
    assert files["copy-of-a.bin"]["cached_bytes"] == 3 * MiB and files["empty.txt"]["size"] == 0
    assert _json(cli("cache", "verify", "--cache-dir", str(fresh), "--json"))["bad"] == []

    with tarfile.open(bundle) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]

    def rewrite(path: Path, change: Callable[[str, bytes], tuple[str, bytes]]) -> Path:
        with tarfile.open(path, "w") as tar:
            for m, data in members:
                name, data = change(m.name, data)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    def flip(name: str, data: bytes) -> tuple[str, bytes]:
        return name, (data[:-10] + bytes([data[-10] ^ 1]) + data[-9:]) if name.startswith("chunks/") else data

    def escape(name: str, data: bytes) -> tuple[str, bytes]:
        return ("../../evil" if name.startswith("layouts/") else name), data

    for change in (flip, escape):
        target = tmp_path / f"bad-{change.__name__}"
        bad = cli("cache", "import", str(rewrite(tmp_path / f"{change.__name__}.tar", change)),
                  "--cache-dir", str(target))
        assert bad.code == 1 and "the revision was not installed" in bad.err
        assert not list(target.rglob("*.snapshot")) and not (tmp_path / "evil").exists()
    truncated = tmp_path / "cut.tar"
    truncated.write_bytes(bundle.read_bytes()[:bundle.stat().st_size // 2])
    cut = cli("cache", "import", str(truncated), "--cache-dir", str(tmp_path / "bad-cut"))
    assert cut.code == 1 and not list((tmp_path / "bad-cut").rglob("*.snapshot"))


def test_pinned_bytes_are_outside_the_bound_unpinned_ones_must_fit(seeded: str, cli: Callable[..., Any],
                                                                  tmp_path: Path) -> None:
    small = cli("prefetch", seeded, "--cache-size", "1M", "--cache-dir", str(tmp_path / "a"))
    assert small.code == 1 and "do not fit in --cache-size" in small.err
    pinned = _json(cli("prefetch", seeded, "--pin", "--cache-size", "1M", "--cache-dir", str(tmp_path / "b"),
                       "--json"))
    assert (pinned["files"], pinned["pinned"]) == (2, 2)
    files = _files(cli, tmp_path / "b")
    assert files["a.bin"]["cached_bytes"] == 3 * MiB and files["d/b.bin"]["cached_bytes"] == 2 * MiB
