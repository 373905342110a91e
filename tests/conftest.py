"""Suite-wide settings. FUSE tests use the ``fuse`` fixture: they skip without /dev/fuse, except that under CI
(``CI=true`` or ``XETFS_REQUIRE_FUSE=1``, xetfs.testing.deps.strict) a missing /dev/fuse is a failure; optional
packages (hf_xet, huggingface_hub, psycopg) follow the same rule through xetfs.testing.deps.required.
``weed`` and ``pg`` are a real SeaweedFS and a real PostgreSQL shared by the tests of one module
(xetfs.testing.services); ``hf_client_env`` sets the official clients quiet and quick to fail
(xetfs.testing.server.HF_CLIENT_ENV)."""
from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from xetfs.cli.main import main
from xetfs.testing.deps import strict
from xetfs.testing.server import HF_CLIENT_ENV, ServerHandle, running_server
from xetfs.testing.services import PostgresHandle, SeaweedFSHandle, postgres, seaweedfs

# The official clients must never reach the internet, and their caches stay per test.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_XET_TELEMETRY_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "0")


def fuse_problem() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (Debian package fuse3)"
    try:
        import pyfuse3  # noqa: F401
    except ImportError as exc:
        return f"pyfuse3 does not import: {exc}"
    return None


@pytest.fixture
def fuse() -> None:
    problem = fuse_problem()
    if problem is None:
        return
    if strict():
        pytest.fail(f"FUSE is required under CI (CI=true or XETFS_REQUIRE_FUSE=1) but unusable: {problem}")
    pytest.skip(f"FUSE unusable: {problem}")


def _set_client_caches(mp: pytest.MonkeyPatch, base: Path) -> None:
    """hf_xet and huggingface_hub keep caches under HF_HOME, xetfs upload its shard cache under XDG_CACHE_HOME:
    caches of the test's own keep uploads deterministic."""
    mp.setenv("HF_HOME", str(base / "hf_home"))
    mp.setenv("XDG_CACHE_HOME", str(base / "xdg_cache"))


@pytest.fixture(scope="session", autouse=True)
def _run_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module-scoped fixtures are set up before the per-test ``_fresh_hf_home``: their uploads get caches of
    this run's own, never the user's (a shard cache kept by an earlier run's server on the same port)."""
    with pytest.MonkeyPatch.context() as mp:
        _set_client_caches(mp, tmp_path_factory.mktemp("run_caches"))
        yield


@pytest.fixture(autouse=True)
def _fresh_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _set_client_caches(monkeypatch, tmp_path)


@pytest.fixture
def hf_client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in HF_CLIENT_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFSHandle]:
    with seaweedfs(tmp_path_factory.mktemp("weed")) as handle:
        yield handle


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresHandle]:
    with postgres(tmp_path_factory.mktemp("pg")) as handle:
        yield handle


# One real `xetfs serve` per module, a fresh repo per test, the CLI in-process (tiers may override `server`).
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
