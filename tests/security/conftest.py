"""Fixtures of the security tier: a real ``xetfs serve`` on the local store or on S3 (SeaweedFS)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from xetfs.testing.server import ServerHandle, running_server
from xetfs.testing.services import SeaweedFSHandle


@pytest.fixture(params=["local", "s3"])
def any_store_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerHandle]:
    """A server on the local store, then one on S3 with direct (presigned) reads."""
    if request.param == "local":
        with running_server(tmp_path) as srv:
            yield srv
        return
    weed: SeaweedFSHandle = request.getfixturevalue("weed")
    args = ["--storage", weed.storage_url(tmp_path.name), "--s3-endpoint", weed.endpoint]
    with running_server(tmp_path, extra_args=args, env=weed.env()) as srv:
        yield srv
