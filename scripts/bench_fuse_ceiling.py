#!/usr/bin/env python3
"""What a pyfuse3 daemon costs on this machine when it does nothing but reply (docs/architecture.md,
"Performance"): the ceiling any pyfuse3 mount reads under, against a local file in the same run.

A daemon in its own process (as ``xetfs mount`` runs) serves one file of ``--size-mib`` from a 64 MiB buffer in
memory, with the mount's options: ``keep_cache``, the kernel's default request size and the backing device's
readahead set to ``--readahead-kb`` (the mount's 256 KiB by default). The same reader as ``bench_mount.py``
(``readinto`` of a reused 16 MiB buffer) reads it after the page cache is dropped, and reads a local file of the
same size with its pages dropped.

Prints one JSON object: ``ceiling_GBps`` and ``local_cold_GBps`` (best of ``--rounds`` each), their ``ratio``,
and the daemon's ``requests`` and bytes per request. A mount benchmark's figure is bounded by this ratio: what
separates a mount from it is the mount's own work per request and per chunk.

Usage: .venv/bin/python scripts/bench_fuse_ceiling.py [--size-mib 1024]
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mount import BLOCK, MiB, drop_page_cache, read_seq   # noqa: E402

BUFFER_BYTES = 64 * MiB
NAME = b"f"


def serve(mountpoint: str, size: int, readahead_kb: int) -> None:
    """The daemon: one read-only file of ``size`` bytes; prints its request count when unmounted."""
    import pyfuse3
    import trio

    data = os.urandom(BUFFER_BYTES)

    class Ops(pyfuse3.Operations):
        requests = 0

        async def getattr(self, inode: int, ctx: object = None) -> pyfuse3.EntryAttributes:
            e = pyfuse3.EntryAttributes()
            e.st_ino = inode
            e.st_mode = (stat.S_IFDIR | 0o755) if inode == pyfuse3.ROOT_INODE else (stat.S_IFREG | 0o444)
            e.st_size = 0 if inode == pyfuse3.ROOT_INODE else size
            e.attr_timeout = e.entry_timeout = 3600
            return e

        async def lookup(self, parent: int, name: bytes, ctx: object = None) -> pyfuse3.EntryAttributes:
            if name != NAME:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return await self.getattr(2)

        async def open(self, inode: int, flags: int, ctx: object) -> pyfuse3.FileInfo:
            return pyfuse3.FileInfo(fh=inode, keep_cache=True)

        async def read(self, fh: int, off: int, n: int) -> bytes:
            self.requests += 1
            at = off % BUFFER_BYTES
            return data[at:at + min(n, size - off, BUFFER_BYTES - at)]

    ops = Ops()
    pyfuse3.init(ops, mountpoint, set(pyfuse3.default_options) | {"fsname=ceiling", "subtype=ceiling", "ro"})

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pyfuse3.main)
            dev = (await trio.to_thread.run_sync(os.stat, mountpoint)).st_dev   # never block the loop on the mount
            Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb").write_text(str(readahead_kb))
            print("ready", flush=True)

    try:
        trio.run(main)
    finally:
        pyfuse3.close(unmount=False)
    print(json.dumps({"requests": ops.requests}), flush=True)


def measure(size: int, readahead_kb: int, rounds: int, workdir: Path) -> dict[str, object]:
    local = workdir / "local.bin"
    with open(local, "wb") as f:
        for _ in range(size // BUFFER_BYTES):
            f.write(os.urandom(BUFFER_BYTES))
        os.fsync(f.fileno())
    mnt = workdir / "mnt"
    mnt.mkdir()
    daemon = subprocess.Popen([sys.executable, __file__, "--serve", str(mnt), "--size-mib", str(size // MiB),
                               "--readahead-kb", str(readahead_kb)], stdout=subprocess.PIPE, text=True)
    assert daemon.stdout is not None
    try:
        if daemon.stdout.readline().strip() != "ready":
            raise SystemExit("the ceiling daemon did not come up")
        mount_s, local_s = [], []
        for _ in range(rounds):   # interleaved: the machine's phase changes between rounds
            drop_page_cache(local)
            local_s.append(read_seq(local, BLOCK))
            drop_page_cache(mnt / NAME.decode(), fsync=False)
            mount_s.append(read_seq(mnt / NAME.decode(), BLOCK))
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        out, _ = daemon.communicate(timeout=30)
    requests = json.loads(out.strip().splitlines()[-1])["requests"] if out.strip() else 0
    ceiling, cold = size / min(mount_s) / 1e9, size / min(local_s) / 1e9
    return {"readahead_kb": readahead_kb, "ceiling_GBps": ceiling, "local_cold_GBps": cold,
            "ratio": ceiling / cold, "requests": requests,
            "bytes_per_request": size * rounds // max(1, requests),
            "ceiling_s_all": mount_s, "local_cold_s_all": local_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024, help="file size, a multiple of 64 (default 1024)")
    ap.add_argument("--readahead-kb", type=int, default=256, help="the device readahead (default: the mount's)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each side counts")
    ap.add_argument("--workdir", type=Path, default=None, help="where the local file and the mountpoint go")
    ap.add_argument("--serve", metavar="MOUNTPOINT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = args.size_mib * MiB
    if size <= 0 or size % BUFFER_BYTES:
        ap.error("--size-mib must be a positive multiple of 64")
    if args.serve:
        serve(args.serve, size, args.readahead_kb)
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        print(json.dumps(measure(size, args.readahead_kb, args.rounds, Path(tmp)), indent=2))


if __name__ == "__main__":
    main()
