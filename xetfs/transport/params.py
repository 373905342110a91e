"""Settings of the HTTP session: timeouts, pool sizes, socket read size, user agent."""
from __future__ import annotations

from dataclasses import dataclass

import httpx


@dataclass(frozen=True, slots=True)
class HttpParams:
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    write_timeout_s: float = 60.0
    pool_timeout_s: float = 60.0
    max_connections: int = 32
    max_keepalive_connections: int = 16
    read_size_bytes: int = 1 << 20
    user_agent: str = "xetfs/0.1"

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect_timeout_s, read=self.read_timeout_s,
                             write=self.write_timeout_s, pool=self.pool_timeout_s)


DEFAULT_HTTP = HttpParams()
