"""Fixtures for the client tests: one real ``xetfs serve`` per module, a fresh repo per test, the CLI in-process."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from xetfs.cli.main import main
from xetfs.testing.server import ServerHandle, running_server

_repo_numbers = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with running_server(tmp_path_factory.mktemp("server")) as srv:
        yield srv


@pytest.fixture
def repo(server: ServerHandle, request: pytest.FixtureRequest) -> str:
    """A new empty model repo ``org/<test name>-<n>``."""
    repo_id = f"org/{request.node.name[:40].replace('[', '-').replace(']', '')}-{next(_repo_numbers)}"
    server.create_repo(repo_id)
    return repo_id


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(server: ServerHandle, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run ``xetfs ARGS`` in this process against the module's server (endpoint + token from the env)."""
    monkeypatch.setenv("XETFS_ENDPOINT", server.url)
    monkeypatch.setenv("XETFS_TOKEN", server.token)

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
