"""Shipped test kit: deterministic data, a real ``xetfs serve`` in a subprocess, the storage conformance suite.

- ``make_bytes(kind, size, seed)``: reproducible test data (random, zeros, pattern, float16, float32, text).
- ``running_server(tmp_path, ...)``: starts ``python -m xetfs.cli.main serve`` on a free loopback port
  (``--port 0``, port read from ``DIR/server.json``; ``extra_args`` go on the command line and ``env`` into
  the environment, e.g. ``--storage s3://…`` and AWS_* keys), waits for ``GET /health``, yields a ``ServerHandle``
  and always stops the process; its output goes to ``tmp_path/server.log``, printed when the block fails.
  ``.start()`` after ``.stop()`` / ``.kill()`` restarts on the same port with the same data.
- ``check_storage_contract(storage)``: the conformance suite every ``xetfs.server.stores.base.Storage`` backend passes.
- ``parse_metrics(text)``: Prometheus text -> dict; ``HF_CLIENT_ENV``: the official clients quiet, quick to fail.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

KINDS = ("random", "zeros", "pattern", "float16", "float32", "text")
_WORDS = ("xet", "chunk", "xorb", "shard", "merkle", "hash", "file", "term", "dedup", "range", "mount", "byte")


def make_bytes(kind: str, size: int, seed: int = 0) -> bytes:
    """Deterministic test data of exactly ``size`` bytes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.bytes(size)
    if kind == "zeros":
        return bytes(size)
    if kind == "pattern":
        period = bytes((i * 7 + seed) % 256 for i in range(251))
        return (period * (size // len(period) + 1))[:size]
    if kind in ("float16", "float32"):
        width = 2 if kind == "float16" else 4
        values = rng.normal(0.0, 0.02, size // width + 1).astype(kind)
        return values.tobytes()[:size]
    if kind == "text":
        words = rng.choice(len(_WORDS), size // 4 + 16)
        text = " ".join(_WORDS[i] for i in words).encode()
        while len(text) < size:
            text += b"\n" + text
        return text[:size]
    raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")


class ServerHandle:
    """A ``xetfs serve`` subprocess. ``.url``, ``.token`` (admin, global write), ``.data_dir``."""

    def __init__(self, tmp_path: Path, token: str | None = None, public_read: bool = False,
                 extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None) -> None:
        self.data_dir = Path(tmp_path) / "server-data"
        self.log_path = Path(tmp_path) / "server.log"
        self._given_token = token
        self.token = token or ""
        self.public_read = public_read
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.cli_args: list[str] = []       # what `xetfs gc` / `xetfs token` need besides --data (a cluster: --db ...)
        self.cli_env: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def objects_bytes(self) -> int:
        """The bytes of every stored object (xorbs, shards, blobs) under the data directory."""
        return sum(p.stat().st_size for p in (self.data_dir / "objects").rglob("*") if p.is_file())

    def start(self, timeout_s: float = 30.0) -> "ServerHandle":
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("server already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "server.json").unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "xetfs.cli.main", "serve", "--data", str(self.data_dir),
               "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--token", self._given_token] if self._given_token else []
        cmd += ["--public-read"] if self.public_read else []
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd + self.extra_args, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env={**os.environ, **self.env})
        self._wait_ready(timeout_s)
        if not self._given_token:
            self.token = (self.data_dir / "admin_token").read_text().strip()
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        info = self.data_dir / "server.json"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"xetfs serve exited with {self.proc.returncode}:\n{self.log_text()}")
            if info.exists():
                self.port = int(json.loads(info.read_text())["port"])
                with contextlib.suppress(OSError):
                    if self.request("GET", "/health", token=None)[0] == 200:
                        return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"xetfs serve not ready after {timeout_s}s:\n{self.log_text()}")

    def restart_empty(self) -> "ServerHandle":
        """Stop, wipe the data directory and start again on the same port: the same URL, none of the data
        (a server reset behind its URL)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return self.start()

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int | None:
        """Signal the server and wait for it (SIGKILL after ``timeout_s``); returns its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except FileNotFoundError:
            return "(no log)"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                token: str | None = "admin", timeout_s: float = 60.0) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request; ``token="admin"`` = the admin token, None = anonymous. Never raises on status."""
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {self.token if token == 'admin' else token}"
        req = urllib.request.Request(path if path.startswith("http") else self.url + path, data=body,
                                     headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers.items()), err.read()

    def metrics(self) -> dict[str, float]:
        status, _, body = self.request("GET", "/metrics", token=None)
        assert status == 200, body
        return parse_metrics(body.decode())

    def create_repo(self, repo_id: str, repo_type: str = "model") -> dict[str, Any]:
        org, _, name = repo_id.rpartition("/")
        body = json.dumps({"name": name, "organization": org or None, "type": repo_type}).encode()
        status, _, data = self.request("POST", "/api/repos/create", body, {"Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"create_repo {repo_id}: {status} {data!r}")
        return json.loads(data)  # type: ignore[no-any-return]


@contextlib.contextmanager
def running_server(tmp_path: Path, token: str | None = None, public_read: bool = False,
                   extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None) -> Iterator[ServerHandle]:
    with started(ServerHandle(tmp_path, token, public_read, extra_args, env), "xetfs serve") as handle:
        yield handle


@contextlib.contextmanager
def started(handle: Any, name: str) -> Iterator[Any]:
    """Start a service handle (``.start()``, ``.stop()``, ``.log_path``, ``.log_text()``), always stop it,
    and print its log when the block fails."""
    try:
        handle.start()
        yield handle
    except BaseException:
        print(f"--- {name} log ({handle.log_path}) ---\n{handle.log_text()}", file=sys.stderr)
        raise
    finally:
        handle.stop()


def check_storage_contract(storage: Any) -> None:
    """The conformance suite of ``xetfs.server.stores.base.Storage`` (run it against every backend)."""
    from xetfs.errors import NotFound, ValidationError

    key, data = "xorbs/contract-object", make_bytes("random", 100_003, seed=7)
    assert not storage.exists(key)
    calls: tuple[Callable[[], object], ...] = (lambda: storage.get(key), lambda: storage.size(key),
                                               lambda: storage.get_range(key, 0, 1))
    for call in calls:
        with _raises(NotFound):
            call()
    assert storage.put_if_absent(key, data) is True
    assert storage.put_if_absent(key, b"other bytes") is False, "an existing object is never replaced"
    assert storage.exists(key) and storage.size(key) == len(data) and storage.get(key) == data
    assert storage.get_range(key, 0, 0) == data[:1]
    assert storage.get_range(key, 1000, 1999) == data[1000:2000]
    assert storage.get_range(key, len(data) - 5, len(data) + 100) == data[-5:], "ranges are clamped"
    path = storage.path_for(key)
    assert path is None or Path(path).read_bytes() == data
    assert storage.put_if_absent("shards/empty", b"") is True and storage.get("shards/empty") == b""
    for bad in ("../escape", "/abs", "a//b", "a/./b", "", "x/..", "a\x00b"):
        with _raises(ValidationError):
            storage.put_if_absent(bad, b"x")
        assert not storage.exists(bad)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(storage.put_if_absent("blobs/race", b"r" * 4096)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1 and storage.get("blobs/race") == b"r" * 4096, results
    storage.delete(key)
    storage.delete(key)
    assert not storage.exists(key)


@contextlib.contextmanager
def _raises(exc_type: type[BaseException]) -> Iterator[None]:
    try:
        yield
    except exc_type:
        return
    raise AssertionError(f"expected {exc_type.__name__}")


# The official clients quiet and quick to give up (a failing test fails fast), with no telemetry.
HF_CLIENT_ENV = {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_XET_TELEMETRY_ENABLED": "false",
                 "HF_XET_CLIENT_RETRY_MAX_ATTEMPTS": "2", "HF_XET_CLIENT_RETRY_BASE_DELAY": "0.1",
                 "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition (parsed by ``prometheus_client.parser``) -> {"name{labels}": value}, e.g.
    ``xetfs_http_requests_total{method="GET",status="200"}`` (labels in the order of the text)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def env_for_hf(hf_home: Path, endpoint: str | None = None, token: str | None = None) -> dict[str, str]:
    """Environment for a subprocess running the official clients against a local server."""
    env = dict(os.environ, HF_HOME=str(hf_home), **HF_CLIENT_ENV)
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    if token:
        env["HF_TOKEN"] = token
    return env
