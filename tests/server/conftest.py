"""Fixtures for server tests: a real ``xetfs serve`` on loopback (per test, or shared by a module)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from xetfs.testing.server import ServerHandle, running_server


@pytest.fixture
def server(tmp_path) -> Iterator[ServerHandle]:
    with running_server(tmp_path) as srv:
        yield srv


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory) -> Iterator[ServerHandle]:
    """One server for a whole module (tests use distinct content, so they do not interfere)."""
    with running_server(tmp_path_factory.mktemp("srv")) as srv:
        srv.create_repo("t/demo")
        yield srv


