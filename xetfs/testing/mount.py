"""Test kit for real FUSE mounts: ``mounted(server, repo, mountpoint)``.

Runs the real ``xetfs mount`` CLI (daemon mode: it returns once the mount is ready) and unmounts on exit with
the real ``xetfs umount``. A ``xetfs umount`` that fails (or leaves the mount or its daemon behind) fails the
test: the failure is recorded, then ``fusermount3 -u -z`` and a SIGKILL of the daemon clean up, so a failing test
never leaves a mount behind. A body that ends the mount itself (SIGTERM to the daemon, or a SIGKILL followed by
``force_unmount``) leaves nothing to unmount. The yielded ``Mount`` knows its daemon pid, its log file and its
counters (``stats()``, the hidden ``.xetfs-stats`` file).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xetfs.osutil.process import pid_alive
from xetfs.testing.files import tree_of, write_tree
from xetfs.testing.server import ServerHandle, running_server

__all__ = ["FreshMount", "Mount", "force_unmount", "mounted", "seeded_server", "tree_of", "uploaded_repo",
           "wait_committed", "xetfs_cli"]

STATS_NAME = ".xetfs-stats"
SERVED = "xetfs_cas_data_bytes_served_total"   # the data bytes a server sent (docs/architecture.md)


@dataclass(frozen=True, slots=True)
class Mount:
    path: Path
    pid: int
    cache_dir: Path
    stderr: str = ""          # what ``xetfs mount`` printed (a notice line such as an offline start)

    def stats(self) -> dict[str, Any]:
        obj = json.loads((self.path / STATS_NAME).read_bytes())
        assert isinstance(obj, dict)
        return obj

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted((self.cache_dir / "logs").glob("*.log")))

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def hwm_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0


def xetfs_cli(*args: str, env: dict[str, str] | None = None, timeout_s: float = 300.0,
              check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``python -m xetfs.cli.main ARGS`` and return the completed process."""
    done = subprocess.run([sys.executable, "-m", "xetfs.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout_s)
    if check and done.returncode != 0:
        raise RuntimeError(f"xetfs {' '.join(args[:1])} failed ({done.returncode}): {done.stderr.strip()}")
    return done


@contextmanager
def uploaded_repo(tmp_path: Path, repo: str, src: Path) -> Iterator[ServerHandle]:
    """A running server (under ``tmp_path/server``) whose new ``repo`` holds the files of the folder ``src``,
    uploaded with the real ``xetfs upload``."""
    with running_server(tmp_path / "server") as srv:
        srv.create_repo(repo)
        xetfs_cli("upload", repo, str(src), "--endpoint", srv.url, "--token", srv.token)
        yield srv


@contextmanager
def seeded_server(tmp_path: Path, repo: str, files: Mapping[str, bytes]) -> Iterator[tuple[ServerHandle, Path]]:
    """``uploaded_repo`` of ``files``, written to ``tmp_path/seed`` first -> (server, the seed folder)."""
    seed = tmp_path / "seed"
    write_tree(seed, files)
    with uploaded_repo(tmp_path, repo, seed) as srv:
        yield srv, seed


def served(server: Any) -> float:
    """The data bytes ``server`` has sent so far (its ``SERVED`` counter)."""
    return float(server.metrics().get(SERVED, 0.0))


class FreshMount:
    """``with FreshMount(server, repo, tmp, tag) as fresh``: a mount of ``repo`` at ``tmp/mnt-TAG`` whose cache
    dir ``tmp/cache-TAG`` is empty when it comes up and removed after; ``fresh.m`` is the ``Mount``,
    ``fresh.served()`` the data bytes the server sent since it came up. ``sync``: ``os.sync()`` first, so no
    writeback of an earlier step runs during this one (benchmarks)."""

    def __init__(self, server: Any, repo: str, tmp: Path, tag: str, *, args: Sequence[str] = (),
                 sync: bool = False) -> None:
        self.server, self.repo, self.args, self.sync = server, repo, args, sync
        self.mnt, self.cache = tmp / f"mnt-{tag}", tmp / f"cache-{tag}"

    def __enter__(self) -> FreshMount:
        shutil.rmtree(self.cache, ignore_errors=True)
        if self.sync:
            os.sync()
        self._ctx = mounted(self.server, self.repo, self.mnt, cache_dir=self.cache, args=self.args)
        self.m = self._ctx.__enter__()
        self.before = served(self.server)
        return self

    def served(self) -> float:
        return served(self.server) - self.before

    def __exit__(self, *exc: Any) -> bool | None:
        try:
            return self._ctx.__exit__(*exc)
        finally:
            shutil.rmtree(self.cache, ignore_errors=True)


def _is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/mounts") as f:
        return any(line.split()[1] == target for line in f if len(line.split()) > 1)


def force_unmount(path: Path, pid: int | None = None) -> None:
    """Last resort: lazy unmount, then kill the daemon."""
    if _is_mounted(path):
        subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_committed(mount: Mount, timeout_s: float = 180.0) -> dict[str, Any]:
    """Wait until a writable mount has nothing pending (conflicts aside); returns its ``write`` counters."""
    deadline = time.monotonic() + timeout_s
    while True:
        write = mount.stats()["write"]
        if write["pending_files"] == 0 and not write["uploading"]:
            return dict(write)
        if time.monotonic() > deadline:
            raise TimeoutError(f"still pending after {timeout_s}s: {write}")
        time.sleep(0.05)


@contextmanager
def mounted(server: Any, repo: str, mountpoint: Path | str, *, cache_dir: Path | str | None = None,
            token: str | None = None, revision: str | None = None, args: Sequence[str] = (),
            env: dict[str, str] | None = None, upload_wait_s: float = 120.0) -> Iterator[Mount]:
    """Mount ``repo`` of ``server`` (anything with ``.url`` and ``.token``) at ``mountpoint`` for the body.
    On exit ``xetfs umount`` gives pending uploads ``upload_wait_s`` (what is left stays journaled)."""
    path = Path(mountpoint).resolve()
    path.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir).resolve() if cache_dir is not None else path.parent / f"{path.name}-cache"
    argv = ["mount", repo, str(path), "--endpoint", server.url, "--cache-dir", str(cache), *args]
    if revision is not None:
        argv += ["--revision", revision]
    tok = token if token is not None else getattr(server, "token", None)
    done = xetfs_cli(*argv, env={**(env or {}), **({"XETFS_TOKEN": tok} if tok else {})})
    pid = None
    try:
        pid = int(json.loads((path / STATS_NAME).read_bytes())["pid"])
        yield Mount(path, pid, cache, done.stderr)
    except BaseException:
        print(f"--- xetfs mount log ({cache / 'logs'}) ---\n{Mount(path, pid or 0, cache).logs()[-20000:]}",
              file=sys.stderr)
        raise
    finally:
        failure = _unmount(path, pid, upload_wait_s)
    if failure is not None:          # reached only when the body succeeded: its own failure comes first
        raise AssertionError(failure)


def _unmount(path: Path, pid: int | None, upload_wait_s: float) -> str | None:
    """``xetfs umount`` -> None, or what went wrong (after cleaning up by force)."""
    failure = None
    if _is_mounted(path):
        done = xetfs_cli("umount", str(path), "--upload-wait", str(upload_wait_s), check=False,
                         timeout_s=60 + upload_wait_s)
        if done.returncode != 0:
            failure = f"xetfs umount {path} failed ({done.returncode}): {done.stderr.strip()}"
        elif _is_mounted(path):
            failure = f"xetfs umount {path} succeeded but the mount is still there"
    deadline = time.monotonic() + 10         # a daemon whose mount is gone exits (umount already waited for it)
    while failure is None and pid is not None and pid_alive(pid):
        if time.monotonic() > deadline:
            failure = f"the daemon (pid {pid}) of {path} still runs after its unmount"
        time.sleep(0.05)
    if failure is not None:
        force_unmount(path, pid)
        deadline = time.monotonic() + 10
        while pid is not None and time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.05)
    return failure
