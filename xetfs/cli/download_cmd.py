"""Download files of a repository revision into a local directory.

Examples:
  xetfs download org/model --to ./model
  xetfs download datasets/org/data train/ README.md --to ./data --revision v1

Without PATH, every file of the revision is downloaded; a PATH names a file or a directory of the repo.
The revision is resolved to a commit first, so all files come from one commit. Xet files are fetched in
parallel, one GET per xorb range (at most 8 at once and 256 MiB of buffers), and checked against their Xet
file hash; other files come from the resolve route and are checked against their git blob id. Each file is
written to a temporary name in its directory and renamed into place when complete and checked; with --fsync,
it is flushed to disk first (a power cut then leaves the whole file or none under its name).
A listed file whose name is unsafe here (absolute, '..', control characters, a segment over 255 bytes, a path
over 4096 bytes: names the server refuses, so only a hostile server sends them) is skipped with a warning;
the others are downloaded, and the command then fails naming how many were skipped.
Exit codes: 0 ok, 1 error (or files skipped).
"""
from __future__ import annotations

import argparse

HELP = "download files of a repo revision into a directory"


def configure(parser: argparse.ArgumentParser) -> None:
    from xetfs.client.config import add_connection_arguments

    parser.add_argument("repo", metavar="REPO", help="org/name or datasets/org/name")
    parser.add_argument("paths", metavar="PATH", nargs="*", help="files or directories in the repo (default: all)")
    parser.add_argument("--to", required=True, metavar="DIR", help="local destination directory")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--fsync", action="store_true",
                        help="flush each file to disk before renaming it into place (slower; by default the "
                             "kernel writes the files out in its own time, as with the official clients)")
    add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from dataclasses import asdict
    from pathlib import Path

    import trio

    from xetfs.cli.progress import progress_bar
    from xetfs.client.config import RepoRef, parse_repo, resolve_endpoint, resolve_token
    from xetfs.client.hub import open_hub
    from xetfs.read.download import DownloadResult, download_files, plan_download
    from xetfs.transport.tasks import single_error

    async def download(endpoint: str, token: str | None, repo: RepoRef) -> DownloadResult:
        with single_error():
            async with open_hub(endpoint, token) as hub:
                plan = await plan_download(hub, repo, args.paths)
                for skip in plan.skipped:
                    print(f"xetfs: warning: skipping {skip.path[:120]!r}: {skip.reason}", file=sys.stderr)
                with progress_bar(sum(e.size for e in plan.files), "download") as bar:
                    return await download_files(hub, plan, root, bar.update, fsync=args.fsync)

    repo = parse_repo(args.repo, args.repo_type, args.revision)
    root = Path(args.to)
    result = trio.run(download, resolve_endpoint(args.endpoint), resolve_token(args.token), repo)
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(f"{result.commit}  {result.files} files, {result.bytes} bytes -> {root}")
    if result.skipped:
        print(f"xetfs: error: skipped {result.skipped} file(s) with unsafe names (see the warnings above)",
              file=sys.stderr)
        return 1
    return 0
