"""Fixtures of the security tier: a real ``xetfs serve`` on the local store or on S3 (SeaweedFS)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from xetfs.server.stores.local import LocalStorage
from xetfs.server.stores.s3 import S3Storage
from xetfs.server.stores.sigv4 import Credentials
from xetfs.testing.server import ServerHandle, running_server
from xetfs.testing.services import SeaweedFSHandle
from xetfs.testing.stores import StoreServer


@pytest.fixture(params=["local", "s3"])
def store_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreServer]:
    """A server on the local store, then one on S3 with direct (presigned) reads."""
    if request.param == "local":
        with running_server(tmp_path) as srv:
            yield StoreServer(srv, LocalStorage(srv.data_dir / "objects"))
        return
    weed: SeaweedFSHandle = request.getfixturevalue("weed")
    args = ["--storage", weed.storage_url(tmp_path.name), "--s3-endpoint", weed.endpoint]
    s3 = S3Storage(weed.storage_url(tmp_path.name), endpoint=weed.endpoint,
                   credentials=Credentials(weed.access_key, weed.secret_key, weed.region))
    try:
        with running_server(tmp_path, extra_args=args, env=weed.env()) as srv:
            yield StoreServer(srv, s3, args, weed.env())
    finally:
        s3.close()


@pytest.fixture
def any_store_server(store_server: StoreServer) -> ServerHandle:
    return store_server.srv


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerHandle]:
    with running_server(tmp_path) as srv:
        yield srv
