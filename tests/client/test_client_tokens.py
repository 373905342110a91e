"""Xet tokens are refreshed ~30 s before they expire, once for any number of concurrent callers."""
from __future__ import annotations

import trio
import trio.testing

from xetfs.client.cas import TokenProvider
from xetfs.protocol.hub import XetToken


def test_proactive_single_flight_refresh() -> None:
    now = [1000.0]
    fetched: list[XetToken] = []

    async def fetch() -> XetToken:
        await trio.sleep(1)          # a network round trip, in virtual time
        token = XetToken("http://cas", f"t{len(fetched)}", now[0] + 100)
        fetched.append(token)
        return token

    async def main() -> None:
        tokens = TokenProvider(fetch, refresh_margin_s=30.0, now=lambda: now[0])
        got: list[str] = []

        async def get() -> None:
            got.append((await tokens.get()).access_token)

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(get)
        assert got == ["t0"] * 5 and len(fetched) == 1
        now[0] += 69                  # 31 s before exp: still fresh
        assert (await tokens.get()).access_token == "t0"
        now[0] += 2                   # 29 s before exp: refresh
        assert (await tokens.get()).access_token == "t1"
        stale = await tokens.get()
        assert (await tokens.refresh(stale)).access_token == "t2"   # forced (after a 401)
        assert len(fetched) == 3

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
