"""Warm the disk cache with files of a repo revision, without mounting.

Examples:
  xetfs prefetch org/model --pin
  xetfs prefetch datasets/org/data train/ --revision v1 --cache-dir /var/cache/xetfs

Resolves the revision to its commit, records the revision's snapshot in the cache dir (what a mount needs to
start with the server unreachable), then reads every selected Xet file (all files without PATH; a PATH names a
file or a directory) through the xetfs read path: each term is verified, the chunks land in the cache dir's
chunk entries and each file's layout is stored, so a later mount of that cache dir (online or offline) reads
them with no network request. Files already complete in the cache are skipped; a progress bar shows the rest.

It does not mount, and may run while mounts use the same cache dir: every cache write is an atomic rename and
layouts are merged under a lock. --pin pins the files: the disk cache's LRU never evicts them (in any process
using the cache dir); pinned bytes do not count against --cache-size, so a selection larger than it needs --pin
(without it, prefetch refuses it up front). `xetfs cache unpin` releases them,
`xetfs cache ls` shows them. Regular (non-Xet) files up to 4 MiB are kept too (checked against their git blob
id); larger ones are not cached (a mount reads them from the server).
Exit codes: 0 ok, 1 error (one line says why), 2 bad usage.
"""
from __future__ import annotations

import argparse

from xetfs.cli.durations import size

HELP = "fill the disk cache with files of a repo revision (optionally pinned), without mounting"


def configure(parser: argparse.ArgumentParser) -> None:
    from xetfs.client.config import add_connection_arguments

    parser.add_argument("repo", metavar="REPO", help="org/name or datasets/org/name")
    parser.add_argument("paths", metavar="PATH", nargs="*", help="files or directories in the repo (default: all)")
    add_connection_arguments(parser)
    parser.add_argument("--pin", action="store_true", help="never evict these files from the disk cache")
    parser.add_argument("--cache-dir", default=None, help="disk cache directory (default ~/.cache/xetfs)")
    parser.add_argument("--cache-size", type=size, default="10G",
                        help="disk cache bound for unpinned bytes while prefetching (default 10G)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict
    from pathlib import Path

    import trio

    from xetfs.cli.progress import progress_bar
    from xetfs.client.config import RepoRef, parse_repo, resolve_endpoint, resolve_token
    from xetfs.client.hub import open_hub
    from xetfs.read.cache import default_cache_dir
    from xetfs.read.prefetch import PrefetchResult, prefetch
    from xetfs.transport.tasks import single_error

    cache_dir = Path(args.cache_dir).expanduser().resolve() if args.cache_dir else default_cache_dir()

    async def go(endpoint: str, token: str | None, repo: RepoRef) -> PrefetchResult:
        with single_error():
            async with open_hub(endpoint, token) as hub:
                with progress_bar(0, "prefetch") as bar:
                    def plan(total: int) -> None:
                        bar.total = total
                        bar.refresh()

                    return await prefetch(hub, repo, args.paths, cache_dir, pin=args.pin,
                                          disk_bytes=args.cache_size, on_plan=plan, progress=bar.update)

    repo = parse_repo(args.repo, args.repo_type, args.revision)
    result = trio.run(go, resolve_endpoint(args.endpoint), resolve_token(args.token), repo)
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(f"{result.commit}  {result.files} Xet files, {result.bytes} bytes, {result.regular_files} regular files cached in {cache_dir} "
              f"({result.already_cached} already, {result.fetched_bytes} bytes fetched"
              f"{f', {result.pinned} newly pinned' if args.pin else ''})"
              f"{f'; {result.uncached_files} large regular files not cached' if result.uncached_files else ''}")
    return 0
