"""One Hub for the parity tests, on either backend (docs/architecture.md, "Tests"):

- ``local``: one ``xetfs serve`` on a directory plus SQLite (a ``ServerHandle``);
- ``cluster``: two nodes sharing PostgreSQL and a SeaweedFS bucket (``services.two_nodes``) behind a loopback
  proxy that sends each new connection to the next node in turn, so one client's requests (and the data URLs
  and CAS URLs the nodes build from the Host header) land on both nodes.

A ``ClusterHub`` answers to what tests and the kit's helpers use of a ``ServerHandle``: ``url``, ``token``,
``data_dir`` (node A's: the audit log of a ``xetfs gc`` run goes there), ``request``, ``create_repo``, plus
``cli_args`` (what ``xetfs gc`` / ``xetfs token`` need to reach the cluster's database and bucket), ``cli_env``
and ``objects_bytes()`` (the bytes of every stored object: the bucket prefix, or the objects directory).
"""
from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from xetfs.testing.proxy import GatedProxy
from xetfs.testing.server import ServerHandle, running_server
from xetfs.testing.services import PostgresHandle, SeaweedFSHandle, two_nodes

BACKENDS = ("local", "cluster")


class ClusterHub:
    def __init__(self, a: ServerHandle, b: ServerHandle, proxy: GatedProxy, weed: SeaweedFSHandle) -> None:
        self.nodes, self.proxy, self.weed = (a, b), proxy, weed
        self.token, self.data_dir = a.token, a.data_dir
        self.cli_args = [x for flag in ("--db", "--storage") for x in (flag, _opt(a, flag))]
        self.cli_args += ["--s3-endpoint", weed.endpoint]
        self.cli_env = weed.env()

    @property
    def url(self) -> str:
        return self.proxy.url

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        return self.nodes[0].request(method, path if path.startswith("http") else self.url + path, *args, **kwargs)

    def create_repo(self, repo_id: str, repo_type: str = "model") -> dict[str, Any]:
        return ServerHandle.create_repo(self, repo_id, repo_type)  # type: ignore[arg-type]

    def objects_bytes(self) -> int:
        """Sum of the sizes of the objects under the cluster's prefix (S3 ListObjectsV2, every page)."""
        import httpx

        from xetfs.server.stores import sigv4

        w = self.weed
        creds = sigv4.Credentials(w.access_key, w.secret_key, w.region)
        prefix = _opt(self.nodes[0], "--storage").removeprefix(f"s3://{w.bucket}/")
        total, token = 0, None
        while True:
            query = f"list-type=2&prefix={sigv4.uri_encode(prefix)}"
            if token is not None:
                query += f"&continuation-token={sigv4.uri_encode(token)}"
            url = f"{w.endpoint}/{w.bucket}?{query}"
            headers = sigv4.sign_headers("GET", url, {}, creds, datetime.now(timezone.utc),
                                         hashlib.sha256(b"").hexdigest())
            resp = httpx.get(url, headers=headers, timeout=30.0, trust_env=False)
            resp.raise_for_status()
            total += sum(int(n) for n in re.findall(r"<Size>(\d+)</Size>", resp.text))
            found = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", resp.text)
            if found is None:
                return total
            token = found.group(1)


def _opt(node: ServerHandle, flag: str) -> str:
    return node.extra_args[node.extra_args.index(flag) + 1]


@contextlib.contextmanager
def cluster_hub(weed: SeaweedFSHandle, pg: PostgresHandle, tmp_path: Path, *node_args: str) -> Iterator[ClusterHub]:
    with two_nodes(weed, pg, tmp_path, *node_args) as (a, b), GatedProxy([a.port, b.port]) as proxy:
        yield ClusterHub(a, b, proxy, weed)


@contextlib.contextmanager
def hub(backend: str, tmp_path: Path, request: Any, public_read: bool = False) -> Iterator[Any]:
    """A running Hub on ``backend`` ("local" or "cluster"); ``request`` is pytest's, for the module-scoped
    ``weed`` and ``pg`` fixtures (started only when a cluster is asked for)."""
    if backend == "local":
        with running_server(tmp_path, public_read=public_read) as srv:
            yield srv
    else:
        extra = ("--public-read",) if public_read else ()
        with cluster_hub(request.getfixturevalue("weed"), request.getfixturevalue("pg"), tmp_path, *extra) as c:
            yield c
            assert c.proxy.connections >= 2, "the cluster's second node served nothing"
