"""Raw-socket range GETs (xetfs.transport.rangeget) against the real server: same bytes as httpx, keep-alive,
status mapping, a dead server, a restarted one (stale pooled connection)."""
from __future__ import annotations

import httpx
import pytest
import trio

from xetfs.transport.params import HttpParams
from xetfs.client.cas import CasClient, FetchUrlExpired, TokenProvider
from xetfs.transport.rangeget import RangeGetter
from xetfs.client.config import RepoRef
from xetfs.errors import NotFound, TransientError
from xetfs.client.hub import open_hub
from xetfs.testing.cas import TINY_UPLOAD
from xetfs.testing.server import ServerHandle, make_bytes
from xetfs.write.upload import upload_files



def test_range_gets_match_httpx_reuse_connections_and_map_errors(server: ServerHandle, repo: str) -> None:
    ref = RepoRef(repo)
    data = make_bytes("random", 200_000, 3)

    async def main() -> None:
        async with open_hub(server.url, server.token) as hub:
            result = await upload_files(hub, ref, [(data, "f.bin")], "one", params=TINY_UPLOAD)
            cas = CasClient(TokenProvider(lambda: hub.xet_token(ref, "read")), hub.http)
            recon = await cas.reconstruction(result.files["f.bin"].file_hash)
            ranges = [fr for frs in recon.fetch.values() for fr in frs]
            assert len(ranges) > 1
            getter = RangeGetter()
            async with httpx.AsyncClient() as plain:   # no range_getter: CasClient's httpx path
                slow = CasClient(cas.tokens, plain)
                for fr in ranges:
                    buf = bytearray(fr.size_bytes)
                    headers, n = await getter.get_into(fr.url, fr.byte_start, fr.byte_end, memoryview(buf))
                    assert n == fr.size_bytes and headers["content-range"].startswith(f"bytes {fr.byte_start}-")
                    assert buf == await slow.fetch_range(fr)
            assert getter.connections_opened == 1          # keep-alive: one connection for every range
            fr = ranges[0]
            with pytest.raises(FetchUrlExpired):            # a refused signature, through CasClient's mapping
                await cas.fetch_range(fr.__class__(fr.xorb_hash, fr.chunk_start, fr.chunk_end, fr.byte_start,
                                                   fr.byte_end, fr.url.replace("s=", "s=0")))
            with pytest.raises(NotFound):
                await getter.get_into(server.url + "/nowhere", 0, 9, memoryview(bytearray(10)))
            await getter.aclose()

    trio.run(main)


def test_stale_pooled_connection_after_restart_and_dead_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from xetfs.testing.server import running_server

    data = make_bytes("random", 50_000, 4)
    with running_server(tmp_path / "srv") as own:
        own.create_repo("org/r")
        ref = RepoRef("org/r")
        getter = RangeGetter(HttpParams(connect_timeout_s=5.0, read_timeout_s=5.0))

        async def fetch(fr) -> bytes:  # type: ignore[no-untyped-def]
            buf = bytearray(fr.size_bytes)
            with trio.fail_after(30):
                await getter.get_into(fr.url, fr.byte_start, fr.byte_end, memoryview(buf))
            return bytes(buf)

        async def main() -> None:
            async with open_hub(own.url, own.token) as hub:
                result = await upload_files(hub, ref, [(data, "f.bin")], "one", params=TINY_UPLOAD)
                cas = CasClient(TokenProvider(lambda: hub.xet_token(ref, "read")), hub.http)
                recon = await cas.reconstruction(result.files["f.bin"].file_hash)
            fr = next(iter(recon.fetch.values()))[0]
            first = await fetch(fr)
            await trio.to_thread.run_sync(own.stop)
            await trio.to_thread.run_sync(own.start)
            assert await fetch(fr) == first                 # the pooled connection was dead: one fresh retry
            assert getter.connections_opened == 2
            await trio.to_thread.run_sync(own.stop)
            with pytest.raises(TransientError):
                await fetch(fr)
            await getter.aclose()

        trio.run(main)
