"""The client against a real ``xetfs serve`` on loopback: CLI upload/download, dedup, errors, tokens, URLs."""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from xetfs.client.cas import CasClient, FetchUrlExpired, TokenProvider
from xetfs.client.config import RepoRef
from xetfs.core.reconstruction import FetchRange
from xetfs.client.hub import open_hub
from xetfs.protocol.hub import XetToken
from xetfs.testing.files import tree_of, write_tree
from xetfs.testing.cas import TINY_UPLOAD
from xetfs.testing.mount import xetfs_cli
from xetfs.testing.server import ServerHandle, make_bytes, started
from xetfs.write.shardcache import ShardCache
from xetfs.write.upload import UploadParams, UploadStats, upload_files
from xetfs.core.params import ChunkingParams, XorbParams
from xetfs.core.hashing import MerkleHash

XORB_BYTES_METRIC = "xetfs_cas_xorb_upload_bytes_total"


def test_cli_round_trip_and_dedup(server: ServerHandle, repo: str, cli: Callable, tmp_path: Path) -> None:  # type: ignore[type-arg]
    files = {"model.bin": make_bytes("random", 3_000_000, 1), "sub/w.f32": make_bytes("float32", 1_500_000, 2),
             "README.md": b"# demo\n", "empty.txt": b""}
    write_tree(tmp_path / "src", files)
    first = cli("upload", repo, str(tmp_path / "src"), "--json")
    assert first.code == 0, first.err
    stats = json.loads(first.out)
    assert stats["files"] == 4 and stats["new_bytes"] == 4_500_000 and stats["deduped_bytes"] == 0
    metric = server.metrics()[XORB_BYTES_METRIC]

    again = cli("upload", repo, str(tmp_path / "src"), "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["xorb_bytes_uploaded"] == 0
    assert server.metrics()[XORB_BYTES_METRIC] == metric, "a second upload sends no xorb bytes"

    down = cli("download", repo, "--to", str(tmp_path / "dst"), "--json")
    assert down.code == 0, down.err
    assert tree_of(tmp_path / "dst") == files
    assert json.loads(down.out)["commit"] == json.loads(again.out)["commit"]


def test_modified_copy_uploads_a_fraction(server: ServerHandle, repo: str, cli: Callable, tmp_path: Path) -> None:  # type: ignore[type-arg]
    data = make_bytes("random", 4_000_000, 3)
    (tmp_path / "a.bin").write_bytes(data)
    assert cli("upload", repo, str(tmp_path / "a.bin")).code == 0
    before = server.metrics()[XORB_BYTES_METRIC]
    edited = bytearray(data)
    edited[2_000_000:2_000_100] = bytes(100)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "a-edited.bin").write_bytes(edited)
    result = cli("upload", repo, str(tmp_path / "b" / "a-edited.bin"), "--json")
    assert result.code == 0, result.err
    sent = server.metrics()[XORB_BYTES_METRIC] - before
    assert 0 < sent < len(data) * 0.1, sent
    assert json.loads(result.out)["deduped_bytes"] > len(data) * 0.9


def test_download_never_loads_numpy(server: ServerHandle, repo: str, cli: Callable, tmp_path: Path) -> None:  # type: ignore[type-arg]
    """numpy (about 0.12 s of start-up) serves only the byte grouping of compressed chunks and the chunker's
    fallback scanner: a download of chunks stored raw never imports it."""
    import subprocess
    import sys

    files = {"model.bin": make_bytes("random", 3_000_000, 7)}
    write_tree(tmp_path / "src", files)
    assert cli("upload", repo, str(tmp_path / "src")).code == 0
    code = ("import sys; from xetfs.cli.main import main; "
            f"assert main(['download', {repo!r}, '--to', {str(tmp_path / 'dst')!r}]) == 0; "
            "print('numpy imported:', 'numpy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "XETFS_ENDPOINT": server.url, "XETFS_TOKEN": server.token})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "numpy imported: False", done.stdout
    assert tree_of(tmp_path / "dst") == files


def test_download_selected_paths(repo: str, cli: Callable, tmp_path: Path) -> None:  # type: ignore[type-arg]
    files = {"a/x.bin": make_bytes("random", 200_000, 4), "a/y.txt": b"y\n", "b/z.bin": make_bytes("zeros", 2_000_000)}
    write_tree(tmp_path / "src", files)
    assert cli("upload", repo, str(tmp_path / "src"), "--path-in-repo", "data").code == 0
    assert cli("download", repo, "data/a", "--to", str(tmp_path / "dst")).code == 0
    assert tree_of(tmp_path / "dst") == {"data/a/x.bin": files["a/x.bin"], "data/a/y.txt": b"y\n"}
    missing = cli("download", repo, "nope", "--to", str(tmp_path / "dst2"))
    assert missing.code == 1 and "nope: not in the repo" in missing.err


def test_bad_token_is_a_one_line_error(repo: str, cli: Callable, tmp_path: Path) -> None:  # type: ignore[type-arg]
    (tmp_path / "f.bin").write_bytes(make_bytes("random", 100_000))
    for args in (("upload", repo, str(tmp_path / "f.bin")), ("download", repo, "--to", str(tmp_path / "d"))):
        result = cli(*args, "--token", "not-a-token")
        assert result.code == 1
        assert result.err.count("\n") == 1 and result.err.startswith("xetfs: error: ") and "401" in result.err


def test_missing_repo_is_a_clear_error(cli: Callable, tmp_path: Path) -> None:  # type: ignore[type-arg]
    (tmp_path / "f.bin").write_bytes(b"x" * 10)
    for args in (("upload", "org/does-not-exist", str(tmp_path / "f.bin")),
                 ("download", "org/does-not-exist", "--to", str(tmp_path / "d"))):
        result = cli(*args)
        assert result.code == 1 and result.err.count("\n") == 1
        assert "404" in result.err and "org/does-not-exist" in result.err


def test_missing_local_path(repo: str, cli: Callable, tmp_path: Path) -> None:  # type: ignore[type-arg]
    result = cli("upload", repo, str(tmp_path / "absent"))
    assert result.code == 1 and "no such file or directory" in result.err


def _read_back(server: ServerHandle, repo: RepoRef, paths: list[str], tmp_path: Path) -> dict[str, bytes]:
    from xetfs.cli.main import main

    code = main(["download", repo.repo_id, *paths, "--to", str(tmp_path), "--endpoint", server.url,
                 "--token", server.token])
    assert code == 0
    return tree_of(tmp_path)


def test_api_multi_xorb_session_dedup(server: ServerHandle, repo: str, tmp_path: Path) -> None:
    """Tiny params: many chunks and xorbs; identical content in two files is stored once."""
    a = make_bytes("random", 150_000, 5)
    b = make_bytes("text", 60_000, 6)
    ref = RepoRef(repo)

    async def main() -> object:
        async with open_hub(server.url, server.token) as hub:
            return await upload_files(hub, ref, [(a, "x/a.bin"), (a, "x/a-copy.bin"), (b + a[:1000], "b.bin")],
                                      "tiny", params=TINY_UPLOAD)

    result = trio.run(main)
    stats = result.stats  # type: ignore[attr-defined]
    assert stats.xorbs_uploaded >= 8
    assert stats.new_bytes < len(a) + len(b) + 1000
    assert stats.deduped_bytes >= len(a)
    got = _read_back(server, ref, [], tmp_path)
    assert got == {"x/a.bin": a, "x/a-copy.bin": a, "b.bin": b + a[:1000]}


def test_401_refreshes_the_token_once(server: ServerHandle, repo: str) -> None:
    ref = RepoRef(repo)
    data = make_bytes("random", 300_000, 7)

    async def main() -> None:
        async with open_hub(server.url, server.token) as hub:
            result = await upload_files(hub, ref, [(data, "f.bin")], "one", params=TINY_UPLOAD)
            file_hash = result.files["f.bin"].file_hash
            real = await hub.xet_token(ref, "read")
            handed = [XetToken(real.cas_url, "stale-token", real.exp), real]

            async def fetch() -> XetToken:
                return handed.pop(0)

            tokens = TokenProvider(fetch)
            cas = CasClient(tokens, hub.http)
            recon = await cas.reconstruction(file_hash, (0, 1000))
            assert tokens.refreshes == 2 and recon.terms
            (fr,) = recon.fetch[recon.terms[0].xorb_hash][:1]
            raw = await cas.fetch_range(fr)
            assert len(raw) == fr.size_bytes
            bad = FetchRange(fr.xorb_hash, fr.chunk_start, fr.chunk_end, fr.byte_start, fr.byte_end,
                             fr.url.replace("s=", "s=0"))
            with pytest.raises(FetchUrlExpired):
                await cas.fetch_range(bad)
            always_bad = CasClient(TokenProvider.static(real.cas_url, "nope"), hub.http)
            from xetfs.errors import Unauthorized
            with pytest.raises(Unauthorized):
                await always_bad.reconstruction(file_hash)

    trio.run(main)


def _late_eligible_data(params: UploadParams) -> tuple[bytes, int, int]:
    """Data whose chunk e (not the first of its xorb) is eligible for global dedup, and the byte
    range of that xorb's chunks in the data."""
    from xetfs.core.chunking import chunk_data
    from xetfs.core.dedup import DedupSession
    from xetfs.core.params import GLOBAL_DEDUP_MODULUS

    for seed in range(100):
        data = make_bytes("random", 400_000, 1000 + seed)
        chunks = chunk_data(data, params.chunking)
        session = DedupSession(params.xorb)
        fid = session.start_file()
        xorbs = session.add_chunks(fid, chunks)
        starts, pos = [0], 0
        for x in xorbs:
            pos += sum(x.chunk_sizes)
            starts.append(pos)
        offset = 0
        for i, c in enumerate(chunks):
            if i and c.hash.modulo(GLOBAL_DEDUP_MODULUS) == 0:
                k = max(j for j, s in enumerate(starts) if s <= offset)
                if k + 1 < len(starts) and offset - starts[k] > 2 * params.read_block_bytes:
                    return data, starts[k], starts[k + 1]
            offset += c.size
    raise AssertionError("no seed gives a late eligible chunk")


def test_dedup_answers_cover_earlier_chunks_of_their_xorb(server: ServerHandle, repo: str) -> None:
    """The consumer looks a xorb ahead: a dedup answer for a chunk late in a xorb also dedups the xorb's
    earlier chunks (without the lookahead they were already packed into new xorbs)."""
    params = UploadParams(chunking=ChunkingParams.tiny(), xorb=XorbParams(max_xorb_bytes=64 * 1024),
                          read_block_bytes=4096, dedup_lookahead_bytes=64 * 1024)
    data, xorb_start, xorb_end = _late_eligible_data(params)
    ref = RepoRef(repo)

    async def upload(content: bytes, path: str) -> object:
        async with open_hub(server.url, server.token) as hub:
            return (await upload_files(hub, ref, [(content, path)], "x", params=params)).stats

    trio.run(upload, data, "a.bin")
    # A new first chunk (so the file-start query misses), then the same bytes.
    stats = trio.run(upload, make_bytes("random", 3000, 77) + data, "b.bin")
    assert stats.deduped_bytes >= xorb_end - xorb_start  # type: ignore[attr-defined]


def _listed_xet_hashes(server: ServerHandle, repo: str) -> dict[str, MerkleHash]:
    status, _, body = server.request("GET", f"/api/models/{repo}/tree/main?recursive=1")
    assert status == 200
    return {e["path"]: MerkleHash.from_hex(e["xetHash"]) for e in json.loads(body)}


def test_download_refuses_bytes_that_are_not_the_listed_file(server: ServerHandle, repo: str, cli: Callable,  # type: ignore[type-arg]
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server whose reconstruction for a.bin names b.bin's terms (each term verifies on its own): the Xet file
    hash of the listing catches it, and nothing is left under the target directory."""
    files = {"a.bin": make_bytes("random", 3_000_000, 21), "b.bin": make_bytes("random", 3_000_000, 22)}
    write_tree(tmp_path / "src", files)
    assert cli("upload", repo, str(tmp_path / "src")).code == 0
    xet = _listed_xet_hashes(server, repo)
    real = CasClient.reconstruction

    async def swapped(self: CasClient, file_hash: MerkleHash, byte_range: tuple[int, int] | None = None) -> object:
        return await real(self, xet["b.bin"] if file_hash == xet["a.bin"] else file_hash, byte_range)

    monkeypatch.setattr(CasClient, "reconstruction", swapped)
    result = cli("download", repo, "--to", str(tmp_path / "dst"))
    assert result.code == 1 and "a.bin: the downloaded bytes are not the listed file" in result.err
    assert not (tmp_path / "dst" / "a.bin").exists()
    assert [p.name for p in (tmp_path / "dst").iterdir() if p.name != "b.bin"] == []


def _count_chunk_hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the chunk hashes the download computes (one per chunk of each fetch range it decodes)."""
    from xetfs.read import wholefile

    calls = [0]
    real = wholefile.chunk_hash

    def counted(data: bytes | memoryview) -> object:
        calls[0] += 1
        return real(data)
    monkeypatch.setattr(wholefile, "chunk_hash", counted)
    return calls


def test_download_hashes_each_chunk_once(server: ServerHandle, repo: str, cli: Callable,  # type: ignore[type-arg]
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each chunk is hashed once, when its fetch range is decoded: the same hash serves the term's check and
    the file hash."""
    from xetfs.core.chunking import chunk_data

    files = {"a.bin": make_bytes("random", 3_000_000, 31), "b.bin": make_bytes("random", 2_000_000, 32)}
    write_tree(tmp_path / "src", files)
    assert cli("upload", repo, str(tmp_path / "src")).code == 0
    calls = _count_chunk_hashes(monkeypatch)
    result = cli("download", repo, "--to", str(tmp_path / "dst"))
    assert result.code == 0, result.err
    assert tree_of(tmp_path / "dst") == files
    assert calls == [sum(len(chunk_data(data)) for data in files.values())]


def test_download_asks_again_for_expired_data_urls(server: ServerHandle, repo: str, cli: Callable,  # type: ignore[type-arg]
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Data URLs that answer 403 (their signature spoiled in the first two reconstructions of the file): each
    fetch range asks for a new reconstruction and takes its URL for the same bytes; the file is right."""
    data = make_bytes("random", 3_000_000, 51)
    write_tree(tmp_path / "src", {"a.bin": data})
    assert cli("upload", repo, str(tmp_path / "src")).code == 0
    real = CasClient.reconstruction
    answers = [0]

    async def spoiled(self: CasClient, file_hash: MerkleHash, byte_range: tuple[int, int] | None = None) -> object:
        r = await real(self, file_hash, byte_range)
        answers[0] += 1
        if answers[0] > 2:
            return r
        bad = {x: tuple(dataclasses.replace(f, url=f.url.replace("s=", "s=0")) for f in frs)
               for x, frs in r.fetch.items()}
        return dataclasses.replace(r, fetch=bad)

    monkeypatch.setattr(CasClient, "reconstruction", spoiled)
    result = cli("download", repo, "--to", str(tmp_path / "dst"))
    assert result.code == 0, result.err
    assert (tmp_path / "dst" / "a.bin").read_bytes() == data
    assert answers[0] >= 3


def test_download_refuses_a_fetch_range_larger_than_a_xorb(server: ServerHandle, repo: str, cli: Callable,  # type: ignore[type-arg]
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reconstruction whose fetch range claims 64 GiB: refused before any buffer is allocated; no file left."""
    write_tree(tmp_path / "src", {"a.bin": make_bytes("random", 1_000_000, 52)})
    assert cli("upload", repo, str(tmp_path / "src")).code == 0
    real = CasClient.reconstruction

    async def huge(self: CasClient, file_hash: MerkleHash, byte_range: tuple[int, int] | None = None) -> object:
        r = await real(self, file_hash, byte_range)
        big = {x: tuple(dataclasses.replace(f, byte_end=f.byte_start + (64 << 30)) for f in frs)
               for x, frs in r.fetch.items()}
        return dataclasses.replace(r, fetch=big)

    monkeypatch.setattr(CasClient, "reconstruction", huge)
    result = cli("download", repo, "--to", str(tmp_path / "dst"))
    assert result.code == 1 and "more than a xorb holds" in result.err
    assert [p.name for p in (tmp_path / "dst").iterdir()] == []


def test_download_refuses_the_right_bytes_cut_at_other_boundaries(server: ServerHandle, repo: str,
                                                                  cli: Callable,  # type: ignore[type-arg]
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A server whose reconstruction for a.bin names the same bytes chunked elsewhere (another upload of them
    with tiny chunks; each term verifies on its own): the leaves are the hashes of the chunks written, so the
    file hash fails though every byte is right."""
    data = make_bytes("random", 3_000_000, 41)
    write_tree(tmp_path / "src", {"a.bin": data})
    assert cli("upload", repo, str(tmp_path / "src")).code == 0
    ref = RepoRef(repo)

    async def upload_tiny() -> MerkleHash:
        async with open_hub(server.url, server.token) as hub:
            result = await upload_files(hub, ref, [(data, "tiny.bin")], "tiny chunks", params=TINY_UPLOAD)
            return result.files["tiny.bin"].file_hash

    tiny = trio.run(upload_tiny)
    xet = _listed_xet_hashes(server, repo)
    assert tiny != xet["a.bin"]   # the server lists tiny.bin by its sha256 as a.bin; its shard has the tiny file
    real = CasClient.reconstruction

    async def rechunked(self: CasClient, file_hash: MerkleHash, byte_range: tuple[int, int] | None = None) -> object:
        return await real(self, tiny if file_hash == xet["a.bin"] else file_hash, byte_range)

    monkeypatch.setattr(CasClient, "reconstruction", rechunked)
    calls = _count_chunk_hashes(monkeypatch)
    result = cli("download", repo, "a.bin", "--to", str(tmp_path / "dst"))
    assert result.code == 1 and "a.bin: the downloaded bytes are not the listed file" in result.err
    assert not (tmp_path / "dst" / "a.bin").exists()
    assert calls[0] > 0   # the leaves were the fetched chunks' own hashes
    monkeypatch.setattr(CasClient, "reconstruction", real)
    assert cli("download", repo, "a.bin", "--to", str(tmp_path / "dst")).code == 0   # its own chunks: fine
    assert (tmp_path / "dst" / "a.bin").read_bytes() == data


@pytest.mark.parametrize("fsync", [False, True])
def test_download_waits_for_the_disk_only_with_fsync(server: ServerHandle, repo: str, cli: Callable,  # type: ignore[type-arg]
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     fsync: bool) -> None:
    """By default, as the official clients, a download leaves the writeback to the kernel: no fsync, no early
    writeback. ``--fsync`` flushes each file (Xet or regular) and its directory before it is in place."""
    import os

    from xetfs.read import wholefile

    files = {"a.bin": make_bytes("random", 3_000_000, 41), "sub/notes.txt": b"a small regular file\n"}
    write_tree(tmp_path / "src", files)
    assert cli("upload", repo, str(tmp_path / "src")).code == 0
    synced: list[int] = []
    written_back: list[int] = []
    real_fsync, real_writeback = os.fsync, wholefile.start_writeback
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(wholefile, "start_writeback",
                        lambda fd, at, n: (written_back.append(n), real_writeback(fd, at, n))[1])
    result = cli("download", repo, "--to", str(tmp_path / "dst"), *(["--fsync"] if fsync else []))
    assert result.code == 0, result.err
    assert tree_of(tmp_path / "dst") == files
    if fsync:
        assert len(synced) >= 2 * len(files), "each file and the directory it was renamed in"
        assert sum(written_back) == len(files["a.bin"]), "the Xet file's terms, as they were written"
    else:
        assert synced == [] and written_back == []


def test_an_upload_after_the_server_lost_its_data_clears_the_stale_shard_cache(tmp_path: Path) -> None:
    """The local shard cache is kept per endpoint URL. A server whose data was reset behind the same URL
    refuses a shard that deduplicated against it (its xorbs are not stored): the upload clears the cache and
    uploads everything again, once, instead of failing every time."""
    files = {"model.bin": make_bytes("random", 3_000_000, 7)}
    write_tree(tmp_path / "src", files)
    cache = tmp_path / "cache"
    args = ("upload", "org/a", str(tmp_path / "src"), "--cache-dir", str(cache), "--create-repo", "--json")
    with started(ServerHandle(tmp_path / "srv"), "xetfs serve") as server:
        first = xetfs_cli(*args, "--endpoint", server.url, "--token", server.token)
        assert json.loads(first.stdout)["xorb_bytes_uploaded"] > 0
        assert list(cache.rglob("*.shard")), "the upload's shard is kept in the local shard cache"
        url = server.url
        assert server.restart_empty().url == url         # the same URL, none of the data

        again = xetfs_cli(*args, "--endpoint", server.url, "--token", server.token)
        assert "clearing the local shard cache" in again.stderr, again.stderr
        stats = json.loads(again.stdout)
        assert stats["xorb_bytes_uploaded"] > 0 and stats["deduped_by_source"].get("local_shard_cache", 0) == 0

        xetfs_cli("download", "org/a", "--to", str(tmp_path / "dst"), "--endpoint", server.url,
                  "--token", server.token)
        assert tree_of(tmp_path / "dst") == files


def test_an_upload_tried_again_without_the_stale_cache_counts_its_bytes_once(tmp_path: Path) -> None:
    """The second upload after a stale shard cache reports its progress and counters from where the first
    started: the progress adds up to the bytes of the files (a bar never passes 100%), and the counters are
    the second upload's alone (every byte new, none from the cleared cache)."""
    data = make_bytes("random", 2_000_000, 11)
    cache = ShardCache(tmp_path / "shards")
    ref = RepoRef("org/p")

    async def upload(server: ServerHandle, progress: list[int]) -> UploadStats:
        async with open_hub(server.url, server.token) as hub:
            await hub.create_repo(ref, exist_ok=True)
            result = await upload_files(hub, ref, [(data, "f.bin"), (b"small\n", "notes.txt")], "p",
                                        progress=progress.append, params=TINY_UPLOAD, shard_cache=cache)
            return result.stats

    with started(ServerHandle(tmp_path / "srv"), "xetfs serve") as server:
        first: list[int] = []
        trio.run(upload, server, first)
        assert sum(first) == len(data) + len(b"small\n") and cache.load()
        server.restart_empty()
        again: list[int] = []
        stats = trio.run(upload, server, again)
        assert sum(again) == len(data) + len(b"small\n"), "each byte reported once over both attempts"
        assert stats.new_bytes == len(data) and stats.deduped_by_source.get("local_shard_cache", 0) == 0, stats
        assert stats.files == 2 and stats.regular_bytes == len(b"small\n")
