"""A fetch range is received with one GET, piece by piece (xetfs.read.pieces), against the real server: the
requests it costs, the bytes it gives, and a GET that breaks off mid-body (the rest comes piece by piece)."""
from __future__ import annotations

import trio

from xetfs.client.cas import CasClient, TokenProvider
from xetfs.client.config import RepoRef
from xetfs.client.hub import open_hub
from xetfs.core.hashing import MerkleHash
from xetfs.read.cache import ChunkCache
from xetfs.read.fetcher import Fetcher
from xetfs.read.reader import FileReader
from xetfs.testing.proxy import GatedProxy
from xetfs.testing.server import ServerHandle, make_bytes
from xetfs.write.upload import upload_files

MiB = 1 << 20
SIZE = 3 * MiB + 12345
DATA_GETS = 'xetfs_http_requests_total{method="GET",status="206"}'   # only data range GETs answer 206


def _data_gets(server: ServerHandle) -> float:
    return server.metrics().get(DATA_GETS, 0.0)


async def _read_all(endpoint: str, token: str, ref: RepoRef, file_hash: MerkleHash) -> tuple[bytes, Fetcher]:
    async with open_hub(endpoint, token) as hub:
        cas = CasClient(TokenProvider(lambda: hub.xet_token(ref, "read")), hub.http)
        fetcher = Fetcher(cas, ChunkCache(memory_bytes=64 * MiB), piece_bytes=1)   # pieces of one record
        reader = FileReader(cas, file_hash, SIZE, fetcher=fetcher)
        with trio.fail_after(60):
            return await reader.read(0, SIZE), fetcher


def _upload(server: ServerHandle, repo: str) -> tuple[bytes, MerkleHash]:
    data = make_bytes("random", SIZE, 21)

    async def main() -> MerkleHash:
        async with open_hub(server.url, server.token) as hub:
            result = await upload_files(hub, RepoRef(repo), [(data, "f.bin")], "one")
            return result.files["f.bin"].file_hash
    return data, trio.run(main)


def test_a_fetch_range_of_many_pieces_costs_one_get(server: ServerHandle, repo: str) -> None:
    data, file_hash = _upload(server, repo)
    before = _data_gets(server)
    got, fetcher = trio.run(_read_all, server.url, server.token, RepoRef(repo), file_hash)
    assert got == data
    pieces = -(-SIZE // fetcher.pieces.piece_bytes)
    assert pieces >= 10 and fetcher.stats.fetches == 1      # one xorb, one fetch range, many pieces
    assert _data_gets(server) - before == 1                  # one GET for all of them


def test_a_get_cut_mid_body_is_finished_piece_by_piece(server: ServerHandle, repo: str) -> None:
    data, file_hash = _upload(server, repo)
    with GatedProxy(server.port) as proxy:
        async def main() -> tuple[bytes, Fetcher]:
            async with trio.open_nursery() as nursery:
                async def cut_mid_body() -> None:
                    await trio.to_thread.run_sync(proxy.wait_held)
                    proxy.cut()            # the data GET loses its connection with 1 MiB of its body received
                    proxy.release()
                # the reconstruction and token answers pass; the data GET is held 1 MiB into its body
                proxy.hold("down", after=MiB + 64 * 1024)
                nursery.start_soon(cut_mid_body)
                return await _read_all(proxy.url, server.token, RepoRef(repo), file_hash)

        before = _data_gets(server)
        got, fetcher = trio.run(main)
    assert got == data                                   # no wrong byte
    assert fetcher.stats.fetches == 1 and fetcher.stats.integrity_failures == 0
    gets = _data_gets(server) - before
    pieces = -(-SIZE // fetcher.pieces.piece_bytes)
    # the cut GET, then one GET per piece not received whole (at least half of them)
    assert pieces // 2 <= gets - 1 < pieces, (gets, pieces)
