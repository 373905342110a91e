"""Mount a repository revision as a directory (FUSE); a branch mounts writable.

Examples:
  xetfs mount org/model /mnt/model
  xetfs mount datasets/org/data /mnt/data --revision v1 --cache-size 50G --memory-cache-size 1G
  xetfs mount org/model /mnt/model --read-only
  xetfs umount /mnt/model

The revision is resolved to one commit at mount time. A branch or a pull request (refs/pr/N) is then
followed: its head is checked every --poll-interval seconds (default 30, 0 turns it off; one small request
each) and a new commit is swapped in at once: new opens and listings show it, removed files vanish, while a
file that is already open keeps reading the revision it was opened at until it is closed (a writable mount
moves once its own changes are committed). A tag or a commit sha never polls. `xetfs stats` shows the
commit shown and when the head was last checked (follow).

Files are fetched lazily, chunk by chunk, and kept in a memory cache (--memory-cache-size, default 256M) and
a disk cache (--cache-dir, default ~/.cache/xetfs; --cache-size, default 10G) that survives remounts and may
be shared by several mounts. Chunks read whole stay in the kernel's page cache and the disk cache, so with a
disk cache the memory cache keeps only 16M of them and the rest for chunks read in part or fetched ahead.
Sizes accept K, M, G, T suffixes (powers of 1024).

Writes: a branch (e.g. main) mounts writable; a commit sha, a tag or --read-only mounts read-only (EROFS).
Files are staged under <cache-dir>/staging (--staging-size bounds it, default 50G; past it writes fail with
ENOSPC). A close returns once the data and a journal entry are on local disk; modified files are then
chunked, deduplicated, uploaded and committed in the background — closes within --commit-delay seconds
(default 0.5) share one commit. Failed uploads are retried with backoff (up to --upload-retry-max seconds
apart); if the mount stops first, the next mount of the same repo, branch and cache dir resumes them.
`xetfs stats` shows pending files/bytes, uploaded and deduplicated bytes, the last commit and conflicts.
Each write() is one request to the mount; --writeback-cache lets the kernel gather small writes into requests
of up to 1 MiB (copyfile into the mount: about 1.4x faster), at the price that write errors show at close or
fsync, and that writing part of a page of a file not read yet fetches that page.

Offline: when the server cannot be reached at mount time (connection refused, timeout, 5xx; not 401/403/404)
and the cache dir holds the revision from an earlier mount (or `xetfs cache import`), the mount starts offline
and says so in one line: files whose chunks are cached (and small regular files read before) are served and
verified, other reads fail with EIO at once. A server lost while mounted makes the mount degraded after a few failed requests (same behaviour). The
mount probes the server in the background and reconnects by itself; `xetfs stats` shows the state (`link`).

Without --foreground the command returns once the mount is ready; the daemon logs to
<cache-dir>/logs/mount-<time>-<pid>.log. `xetfs umount MOUNTPOINT` waits for pending uploads (bounded) and
unmounts (or SIGTERM/SIGINT to the daemon: pending changes stay journaled). `xetfs stats MOUNTPOINT` prints
the mount's counters (read from the hidden file MOUNTPOINT/.xetfs-stats). --metrics-addr HOST:PORT serves
the same counters, cache hits per tier and fetch/reconstruction latency histograms as Prometheus text at
http://HOST:PORT/metrics (names in docs/architecture.md, "Metrics"); --log-format json logs JSON lines.

Exit codes: 0 mounted (or unmounted cleanly in --foreground), 1 error (one line says why), 2 bad usage.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from xetfs.cli.durations import duration, size as parse_size
from xetfs.osutil.malloc import daemon_env

if TYPE_CHECKING:
    from xetfs.fs.mount import MountOptions

HELP = "mount a repo revision as a directory (a branch mounts writable)"

READY_TIMEOUT_S = 300.0


def configure(parser: argparse.ArgumentParser) -> None:
    from xetfs.client.config import add_connection_arguments

    parser.add_argument("repo", metavar="REPO", help="org/name or datasets/org/name")
    parser.add_argument("mountpoint", metavar="MOUNTPOINT", help="an existing empty directory")
    add_connection_arguments(parser)
    parser.add_argument("--cache-dir", default=None, help="disk cache directory (default ~/.cache/xetfs)")
    parser.add_argument("--cache-size", type=parse_size, default="10G", help="disk cache bound (default 10G)")
    parser.add_argument("--memory-cache-size", type=parse_size, default="256M",
                        help="memory cache bound (default 256M)")
    parser.add_argument("--read-timeout", type=float, default=120.0, metavar="SECONDS",
                        help="a read that cannot be served in this time fails with EIO (default 120)")
    parser.add_argument("--foreground", "-f", action="store_true", help="stay in the foreground, log to stderr")
    only_one = parser.add_mutually_exclusive_group()   # the kernel's writeback cache is for writes
    only_one.add_argument("--read-only", action="store_true", help="mount read-only even when REV is a branch")
    parser.add_argument("--staging-size", type=parse_size, default="50G",
                        help="bound of the staging area for written files (default 50G); past it: ENOSPC")
    parser.add_argument("--commit-delay", type=float, default=0.5, metavar="SECONDS",
                        help="closes within this delay share one commit (default 0.5)")
    only_one.add_argument("--writeback-cache", action="store_true",
                        help="writable mounts: let the kernel gather writes into large requests, for programs that "
                             "write in small pieces (shutil.copyfile, buffered writers). Write errors (a full "
                             "staging area) then surface at close or fsync instead of write, and writing part of "
                             "a page of a file not yet read fetches that page (docs/architecture.md, \"Kernel "
                             "writeback cache\")")
    parser.add_argument("--upload-retry-max", type=float, default=30.0, metavar="SECONDS",
                        help="longest wait between retries of a failed upload (default 30)")
    parser.add_argument("--metrics-addr", type=_addr, default=None, metavar="HOST:PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9100)")
    parser.add_argument("--poll-interval", type=duration, default=30.0, metavar="SECONDS",
                        help="a mounted branch or refs/pr/N checks its head this often and shows new commits "
                             "(files open keep their revision until closed); 0: never (default 30; a tag or "
                             "commit never polls)")
    parser.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)


def _addr(text: str) -> tuple[str, int]:
    from xetfs.fs.metrics import parse_addr

    try:
        return parse_addr(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _options(args: argparse.Namespace) -> "MountOptions":
    from xetfs.read.cache import default_cache_dir
    from xetfs.client.config import parse_repo, resolve_endpoint, resolve_token
    from xetfs.fs.mount import MountOptions

    return MountOptions(
        repo=parse_repo(args.repo, args.repo_type, args.revision), mountpoint=Path(args.mountpoint).resolve(),
        endpoint=resolve_endpoint(args.endpoint), token=resolve_token(args.token),
        cache_dir=Path(args.cache_dir).expanduser().resolve() if args.cache_dir else default_cache_dir(),
        disk_cache_bytes=args.cache_size, memory_cache_bytes=args.memory_cache_size,
        read_timeout_s=args.read_timeout, fetch_timeout_s=max(1.0, args.read_timeout * 0.75),
        read_only=args.read_only, staging_bytes=args.staging_size, commit_delay_s=args.commit_delay,
        retry_max_s=args.upload_retry_max, metrics_addr=args.metrics_addr,
        poll_interval_s=args.poll_interval, writeback_cache=args.writeback_cache)


def run(args: argparse.Namespace) -> int:
    from xetfs.fs.mount import check_mountpoint, run_mount

    opts = _options(args)
    if not args.foreground:
        check_mountpoint(opts.mountpoint)   # fail fast, before starting a daemon
        return _daemonise(args, opts)
    ready_fd = args.ready_fd
    if not getattr(args, "debug", False):
        logging.getLogger("xetfs").setLevel(logging.INFO)   # mount/unmount and errors in the daemon log

    def on_ready(error: str | None, notice: str | None = None) -> None:
        nonlocal ready_fd
        if error is None and notice and ready_fd is None:
            if getattr(args, "log_format", "text") == "json":
                logging.getLogger("xetfs.fs.mount").warning("%s", notice)
            else:
                print(f"xetfs: {notice}", file=sys.stderr)
        if ready_fd is not None:
            line = f"error: {error}" if error is not None else f"ok {notice}" if notice else "ok"
            os.write(ready_fd, f"{' '.join(line.split())}\n".encode())
            os.close(ready_fd)
            ready_fd = None

    try:
        return run_mount(opts, on_ready)
    except BaseException as exc:
        on_ready(str(exc) or type(exc).__name__)
        raise


def _child_argv(args: argparse.Namespace, opts: "MountOptions", ready_fd: int) -> list[str]:
    argv = [sys.executable, "-m", "xetfs.cli.main"]
    if getattr(args, "debug", False):
        argv.append("--debug")
    argv += ["--log-format", getattr(args, "log_format", "text")]
    argv += ["mount", args.repo, str(opts.mountpoint), "--foreground", "--ready-fd", str(ready_fd),
             "--endpoint", opts.endpoint, "--cache-dir", str(opts.cache_dir),
             "--cache-size", str(opts.disk_cache_bytes), "--memory-cache-size", str(opts.memory_cache_bytes),
             "--read-timeout", str(args.read_timeout), "--repo-type", opts.repo.repo_type,
             "--revision", opts.repo.revision, "--staging-size", str(opts.staging_bytes),
             "--commit-delay", str(opts.commit_delay_s), "--upload-retry-max", str(opts.retry_max_s),
             "--poll-interval", str(opts.poll_interval_s)]
    if opts.read_only:
        argv.append("--read-only")
    if opts.writeback_cache:
        argv.append("--writeback-cache")
    if opts.metrics_addr is not None:
        host, port = opts.metrics_addr
        argv += ["--metrics-addr", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    return argv


def _daemonise(args: argparse.Namespace, opts: "MountOptions") -> int:
    """Start the foreground mount as a detached process and wait for its readiness line."""
    logs = opts.cache_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"mount-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    env = daemon_env(os.environ)   # glibc settings read at start (docs/architecture.md, "Performance")
    if opts.token:
        env["XETFS_TOKEN"] = opts.token   # not on the command line, where ps would show it
    r, w = os.pipe()
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(_child_argv(args, opts, w), pass_fds=(w,), stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=log_file, env=env, start_new_session=True)
    os.close(w)
    answer = _read_line(r, READY_TIMEOUT_S)
    if answer == "ok" or answer.startswith("ok "):
        if answer[3:]:
            print(f"xetfs: {answer[3:]}", file=sys.stderr)   # e.g. mounted read-only: the token cannot write
        return 0
    if proc.poll() is None and not answer:
        proc.terminate()
    proc.wait(timeout=30)
    from xetfs.errors import XetError

    raise XetError(answer.removeprefix("error: ") if answer else f"the mount daemon exited (log: {log_path})")


def _read_line(fd: int, timeout_s: float) -> str:
    import select

    data = b""
    deadline = time.monotonic() + timeout_s
    try:
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            piece = os.read(fd, 4096)
            if not piece:
                break
            data += piece
    finally:
        os.close(fd)
    return data.decode(errors="replace").strip()

