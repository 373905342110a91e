"""Unmount a xetfs mount and wait for its daemon to exit.

Example:
  xetfs umount /mnt/model
  xetfs umount /mnt/model --upload-wait 0     # do not wait for pending uploads

A writable mount first gets up to --upload-wait seconds (default 300) to upload and commit its pending
changes (conflicted files excluded); whatever is still pending then stays journaled under the cache dir and
the next mount of the same repo, branch and cache dir uploads it. Then ``fusermount3 -u MOUNTPOINT`` runs
(``--lazy`` adds ``-z``: detach now, finish when the last file closes) and the command waits up to --timeout
seconds for the daemon (its pid comes from MOUNTPOINT/.xetfs-stats) to exit. When the mount is busy the
error names the processes that hold files open or mapped under it, or have their working directory there
(pid and command), and suggests --lazy; --lazy with files still open returns once detached (the daemon exits
when the last one closes).
Paths that are not committed (the Hub refused them, or still pending after --upload-wait) are listed on
stderr and the exit code is 1 even though the unmount succeeded: they stay journaled, and the next mount
of the same repo, branch and cache dir retries them.
Exit codes: 0 unmounted with everything committed, 1 error (not mounted, busy, the daemon did not exit, or
paths left uncommitted).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

HELP = "unmount a xetfs mount"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mountpoint", metavar="MOUNTPOINT")
    parser.add_argument("--lazy", "-z", action="store_true", help="detach now even if files are open")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the daemon (default 30)")
    parser.add_argument("--upload-wait", type=float, default=300.0, metavar="SECONDS",
                        help="seconds to wait for pending uploads before unmounting (default 300)")


def _pid_of(mountpoint: Path) -> int | None:
    from xetfs.fs.stats import read_stats
    from xetfs.errors import XetError

    try:
        pid = read_stats(mountpoint).get("pid")
    except XetError:
        return None
    return pid if isinstance(pid, int) else None


def wait_for_uploads(mountpoint: Path, timeout_s: float) -> list[str]:
    """Poll the mount's counters until nothing is pending (conflicts aside, at most ``timeout_s``); returns
    the paths left uncommitted: ``path (failed: why)`` and ``path (pending)``."""
    from xetfs.fs.stats import read_stats
    from xetfs.errors import XetError

    deadline = time.monotonic() + max(0.0, timeout_s)
    while True:
        try:
            write = read_stats(mountpoint).get("write") or {}
        except XetError:
            return []
        pending = int(write.get("pending_files", 0))
        if pending == 0 or time.monotonic() >= deadline:
            failed = write.get("failed") or {}
            paths = [f"{p} (failed: {why})" for p, why in sorted(failed.items())]
            shown = list(write.get("pending_paths") or [])
            paths += [f"{p} (pending)" for p in shown]
            if pending > len(shown):
                paths.append(f"... and {pending - len(shown)} more pending")
            return paths
        time.sleep(0.1)


def holders(mountpoint: Path, proc: Path = Path("/proc")) -> list[tuple[int, str]]:
    """(pid, command) of the processes with a file open or mapped under ``mountpoint``, or their working
    directory or root there (from /proc; processes we may not inspect are skipped)."""
    root = str(mountpoint)

    def under(path: str) -> bool:
        path = path.removesuffix(" (deleted)")
        return path == root or path.startswith(root + "/")

    found: list[tuple[int, str]] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            links = [os.readlink(entry / name) for name in ("cwd", "root")]
            links += [os.readlink(fd) for fd in (entry / "fd").iterdir()]
            maps = (entry / "maps").read_text(errors="replace")
        except OSError:
            continue
        paths = links + [line.split(None, 5)[5] for line in maps.splitlines() if len(line.split(None, 5)) == 6]
        if any(under(p) for p in paths):
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                command = " ".join(a.decode(errors="replace") for a in argv if a)[:80]
            except OSError:
                command = ""
            found.append((int(entry.name), command or "?"))
    return sorted(found)


def unmount(mountpoint: Path, *, lazy: bool = False, timeout_s: float = 30.0,
            upload_wait_s: float = 300.0) -> list[str]:
    """Unmount; returns the paths left uncommitted (see ``wait_for_uploads``)."""
    from xetfs.errors import ValidationError, XetError
    from xetfs.osutil.process import pid_alive

    if not os.path.ismount(mountpoint):
        raise ValidationError(f"{mountpoint} is not mounted")
    left = wait_for_uploads(mountpoint, upload_wait_s)
    pid = _pid_of(mountpoint)
    in_use = lazy and bool(holders(mountpoint))   # after a lazy unmount /proc no longer shows the mountpoint
    cmd = ["fusermount3", "-u", *(["-z"] if lazy else []), str(mountpoint)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        users = holders(mountpoint)
        if users or "busy" in done.stderr:
            held = "; ".join(f"pid {p} ({c})" for p, c in users[:10]) or "no process found"
            more = f" and {len(users) - 10} more" if len(users) > 10 else ""
            raise XetError(f"{mountpoint} is busy: in use by {held}{more}; close them, or use --lazy to "
                           "detach now and finish when they are done")
        raise XetError(done.stderr.strip() or f"fusermount3 failed with status {done.returncode}")
    if in_use:
        import sys

        print(f"xetfs umount: {mountpoint} is detached; the daemon exits when the last file under it is closed",
              file=sys.stderr)
        return left
    deadline = time.monotonic() + timeout_s
    while pid is not None and pid_alive(pid):
        if time.monotonic() > deadline:
            raise XetError(f"unmounted, but the daemon (pid {pid}) is still running after {timeout_s:g}s")
        time.sleep(0.05)
    return left


def run(args: argparse.Namespace) -> int:
    import sys

    left = unmount(Path(args.mountpoint).resolve(), lazy=args.lazy, timeout_s=args.timeout,
                   upload_wait_s=args.upload_wait)
    if left:
        print(f"xetfs umount: unmounted, but {len(left)} paths are not committed (they stay journaled; the next "
              "mount of the same repo, branch and cache dir retries them):", file=sys.stderr)
        for line in left:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0
