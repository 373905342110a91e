"""Expired xet (CAS) tokens against a real ``xetfs serve``: the server refuses a stale token with 401 on every
CAS route, and the client, handed a token the server no longer accepts, fetches a new one once and repeats
the call (reads and uploads); a token that stays refused is a clean ``Unauthorized`` after one refresh.

Expired tokens are minted with the server's own key (from its data directory) and a negative lifetime, so no
test waits for a token to age."""
from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

import pytest
import trio

from xetfs.client.cas import CasClient, TokenProvider
from xetfs.client.config import RepoRef
from xetfs.client.hub import open_hub
from xetfs.errors import Unauthorized
from xetfs.protocol.hub import XetToken
from xetfs.server.auth import Auth, Principal
from xetfs.server.metadata.store import Metadata
from xetfs.testing.cas import TINY_UPLOAD, assemble, build_file, cas_token
from xetfs.testing.server import ServerHandle, make_bytes
from xetfs.write.upload import upload_files



def expired_token(srv: ServerHandle, repo: str, scope: str) -> str:
    """A token the server signed for ``repo`` (a model) that expired a minute ago."""
    meta = Metadata(srv.data_dir / "metadata.sqlite3")
    try:
        token, exp = Auth(srv.data_dir, meta, "unused").issue_cas_token(Principal("admin", "write"),
                                                                         f"model:{repo}", "main", scope, ttl_s=-60)
    finally:
        meta.close()
    assert exp < time.time()
    return token


def scripted_tokens(srv: ServerHandle, first: list[str], fresh: Callable[[], Awaitable[XetToken]]
                    ) -> tuple[TokenProvider, list[str]]:
    """A provider handing out the ``first`` tokens (claimed valid for an hour, as a skewed clock would), then
    fresh ones from the Hub; -> (provider, the tokens it handed out)."""
    handed: list[str] = []

    async def fetch() -> XetToken:
        token = XetToken(srv.url, first.pop(0), time.time() + 3600) if first else await fresh()
        handed.append(token.access_token)
        return token
    return TokenProvider(fetch), handed


def test_a_stale_token_is_refused_on_every_cas_route(server: ServerHandle, repo: str) -> None:
    f = build_file(seed=301)
    read, write = expired_token(server, repo, "read"), expired_token(server, repo, "write")
    for method, path, body, token in (
            ("GET", f"/v1/reconstructions/{f.file_hash}", None, read),
            ("GET", f"/v2/reconstructions/{f.file_hash}", None, read),
            ("HEAD", f"/v1/files/{f.file_hash}", None, read),
            ("GET", f"/v1/chunks/default/{f.xorb.chunk_hashes[0]}", None, read),
            ("POST", f"/v1/xorbs/default/{f.xorb.hash}", f.xorb.data, write),
            ("POST", "/v1/shards", f.shard(), write)):
        status, _, answer = server.request(method, path, body, token=token)
        assert status == 401, (method, path, status, answer)
        if method != "HEAD":
            assert "expired" in json.loads(answer)["error"], answer
    assert server.request("HEAD", f"/v1/xorbs/default/{f.xorb.hash}", token=write)[0] == 401
    assert not (server.data_dir / "objects" / "xorbs" / str(f.xorb.hash)).exists(), "nothing stored"


def test_the_client_refreshes_a_token_the_server_calls_expired(server: ServerHandle, repo: str) -> None:
    ref = RepoRef(repo)
    data = make_bytes("random", 200_000, 302)
    f = build_file(seed=303)

    async def main() -> None:
        async with open_hub(server.url, server.token) as hub:
            uploaded = await upload_files(hub, ref, [(data, "f.bin")], "add", params=TINY_UPLOAD)
            file_hash = uploaded.files["f.bin"].file_hash
            stale = expired_token(server, repo, "read")
            tokens, handed = scripted_tokens(server, [stale], lambda: hub.xet_token(ref, "read"))
            cas = CasClient(tokens, hub.http)
            recon = await cas.reconstruction(file_hash)
            fetched = {fr: bytes(await cas.fetch_range(fr)) for frs in recon.fetch.values() for fr in frs}
            assert assemble(recon, fetched)[recon.offset_into_first_range:] == data
            assert handed[0] == stale and len(handed) == 2 and tokens.refreshes == 2, "refreshed once, after the 401"

            stale_w = expired_token(server, repo, "write")
            tokens, handed = scripted_tokens(server, [stale_w], lambda: hub.xet_token(ref, "write"))
            assert await CasClient(tokens, hub.http).upload_xorb(f.xorb) is True
            assert handed[0] == stale_w and len(handed) == 2, "the upload was repeated with a new token"

            always = [expired_token(server, repo, "read") for _ in range(3)]
            tokens, handed = scripted_tokens(server, always, lambda: hub.xet_token(ref, "read"))
            with pytest.raises(Unauthorized, match="expired"):
                await CasClient(tokens, hub.http).reconstruction(file_hash)
            assert len(handed) == 2, "one refresh, then the second 401 is final"

    trio.run(main)
    assert server.request("HEAD", f"/v1/xorbs/default/{f.xorb.hash}", token=cas_token(server, repo))[0] == 200
