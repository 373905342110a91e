"""Several endpoints (xetfs.transport.endpoints): parsing, the pure selection/health rules, and the failover walk against
a real server, a dead port and a real socket that never answers."""
from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
import trio

from xetfs import errors
from xetfs.transport import http
from xetfs.transport.params import HttpParams
from xetfs.client.cas import CasClient, TokenProvider
from xetfs.client.config import RepoRef, resolve_endpoint
from xetfs.transport.endpoints import (EndpointHealth, Failover, FailoverParams, failover_for, node_failure, node_of,
                             parse_endpoints)
from xetfs.client.hub import open_hub
from xetfs.testing.cas import TINY_UPLOAD, assemble
from xetfs.testing.server import ServerHandle, make_bytes
from xetfs.testing.services import free_port
from xetfs.write.upload import upload_files

A, B, C = "http://a:1", "http://b:2", "http://c:3"


def test_parse_and_resolve() -> None:
    assert parse_endpoints(" http://a:1/ ,http://b:2,, http://a:1") == ("http://a:1", "http://b:2")
    assert resolve_endpoint("http://a:1/, https://b/hub/", {}) == "http://a:1,https://b/hub"
    assert resolve_endpoint(None, {"XETFS_ENDPOINT": "http://x:1,http://y:2"}) == "http://x:1,http://y:2"
    for bad in ("http://a:1,ftp://b", ",", "a:1", "http://"):
        with pytest.raises(errors.ValidationError):
            parse_endpoints(bad)
    assert node_of("HTTP://Node:8080/v1/data/x?s=1") == "http://node:8080"


def _err(cls: type[errors.XetError], status: int, *, request_sent: bool = True) -> errors.XetError:
    return cls("x", http_status=status, request_sent=request_sent)


def test_node_failures() -> None:
    for exc in (_err(errors.TransientError, 0), _err(errors.TransientError, 503), _err(errors.TransientError, 500)):
        assert node_failure(exc)
    for exc in (_err(errors.TransientError, 429), _err(errors.TransientError, 408), _err(errors.NotFound, 404),
                _err(errors.Forbidden, 403), errors.TransientError("no status"), ValueError("x")):
        assert not node_failure(exc)
    # Not idempotent (a commit): only a request that never left moves.
    assert node_failure(_err(errors.TransientError, 0, request_sent=False), idempotent=False)
    assert not node_failure(_err(errors.TransientError, 0), idempotent=False)
    assert not node_failure(_err(errors.TransientError, 503), idempotent=False)


def test_order_prefers_fast_and_up_nodes_keeping_the_given_order_among_equals() -> None:
    h = EndpointHealth(FailoverParams(down_s=10.0, near_factor=1.5, near_slack_s=0.002))
    h.register([A, B, C])
    assert h.order([A, B, C], 0.0) == [A, B, C], "unprobed: the given order"
    h.mark_up(A, 0.004)
    h.mark_up(B, 0.003)
    h.mark_up(C, 0.050)
    assert h.order([A, B, C], 0.0) == [A, B, C], "A and B are equally fast: the user's order"
    h.mark_up(A, 0.020)
    assert h.order([A, B, C], 0.0) == [B, A, C]
    h.mark_down(B, now_s=1.0)
    h.mark_down(A, now_s=2.0)
    assert h.order([A, B, C], 3.0) == [C, B, A], "down nodes last, soonest back first, never dropped"
    assert h.is_down(A, 11.9) and not h.is_down(A, 12.0)
    h.mark_up(B)
    assert h.order([A, B, C], 3.0) == [B, C, A]


def test_probe_schedule() -> None:
    h = EndpointHealth(FailoverParams(reprobe_s=5.0, refresh_s=100.0))
    assert not h.needs_probe([A], 0.0), "one endpoint: nothing to choose"
    assert h.needs_probe([A, B], 0.0)
    h.last_probe_s = 0.0
    assert not h.needs_probe([A, B], 4.0)
    h.mark_down(B, 1.0)
    assert not h.needs_probe([A, B], 4.0) and h.needs_probe([A, B], 5.0), "a node is down: probe again soon"
    h.mark_up(B, 0.001)
    assert not h.needs_probe([A, B], 99.0) and h.needs_probe([A, B], 100.0)


def test_node_failed_only_switches_with_alternatives() -> None:
    async def main() -> None:
        fo = Failover()
        fo.health.register([A])
        assert not fo.node_failed(A + "/v1/data/x", _err(errors.TransientError, 0)), "one node: just retry"
        fo.health.register([A, B])
        assert not fo.node_failed("http://s3:9000/bucket/x", _err(errors.TransientError, 0)), "not a node"
        assert not fo.node_failed(A + "/v1/data/x", _err(errors.NotFound, 404))
        assert fo.node_failed(A + "/v1/data/x", _err(errors.TransientError, 0))
        assert fo.should_switch(A) and not fo.should_switch(B)

    trio.run(main)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A real listening socket that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def test_failover_walk_against_real_sockets(server: ServerHandle, repo: str, silent_port: int) -> None:
    dead, live, silent = f"http://127.0.0.1:{free_port()}", server.url, f"http://127.0.0.1:{silent_port}"
    auth = {"Authorization": f"Bearer {server.token}"}
    body = json.dumps({"name": "made-by-failover", "organization": "org"}).encode()

    async def main() -> None:
        async with http.make_http_client(HttpParams(read_timeout_s=0.5)) as client:
            fo = Failover()
            fo.health.register([dead, live, silent])
            fo.health.last_probe_s = trio.current_time()    # no probe: walk in the given order
            tried: list[str] = []

            async def create(base: str) -> int:
                tried.append(base)
                return (await http.send(client, "POST", base + "/api/repos/create", content=body,
                                        headers={**auth, "Content-Type": "application/json"})).status_code

            # A refused connection never reached the node: even a request sent once moves on.
            assert await fo.call(client, [dead, live], create, idempotent=False) == 200
            assert tried == [dead, live] and fo.health.is_down(dead, trio.current_time())
            # A node that took the request and went silent may have done it: not repeated elsewhere.
            tried.clear()
            with pytest.raises(errors.TransientError):
                await fo.call(client, [silent, live], create, idempotent=False)
            assert tried == [silent]
            # A live node's answer (409: exists) is the answer, not a reason to move.
            tried.clear()
            with pytest.raises(errors.AlreadyExists):
                await fo.call(client, [live, dead], create)
            assert tried == [live]

    trio.run(main)


def test_clients_skip_a_dead_endpoint(server: ServerHandle, repo: str) -> None:
    """Hub calls, the token's casUrl and the data URLs all end up on the live node; a probe found the dead one."""
    dead = f"http://127.0.0.1:{free_port()}"
    ref = RepoRef(repo)
    data = make_bytes("random", 300_000, 5)

    async def main() -> None:
        async with open_hub(f"{dead},{server.url}", server.token) as hub:
            assert hub.endpoints == (dead, server.url) and hub.endpoint == f"{dead},{server.url}"
            result = await upload_files(hub, ref, [(data, "f.bin")], "through the live node", params=TINY_UPLOAD)
            fo = failover_for(hub.http)
            assert fo.health.is_down(dead, trio.current_time()), "the start-up probe found it dead"
            cas = CasClient(TokenProvider(lambda: hub.xet_token(ref, "read")), hub.http)
            assert cas.failover is fo, "Hub and CAS clients on one pool share the health"
            recon = await cas.reconstruction(result.files["f.bin"].file_hash)
            fetched = {fr: bytes(await cas.fetch_range(fr)) for frs in recon.fetch.values() for fr in frs}
            assert all(fr.url.startswith(server.url) for fr in fetched)
            assert assemble(recon, fetched)[recon.offset_into_first_range:] == data

    trio.run(main)
