"""Download files of a repository revision into a local directory.

Examples:
  xetfs download org/model --to ./model
  xetfs download datasets/org/data train/ README.md --to ./data --revision v1

Without PATH, every file of the revision is downloaded; a PATH names a file or a directory of the repo.
The revision is resolved to a commit first, so all files come from one commit. Xet files are read through
the xetfs read path (reconstruction, parallel range fetches, per-term verification) and checked against
their sha256; other files come from the resolve route and are checked against their git blob id. Each
file is written to a temporary name in its directory and renamed into place when complete.
Exit codes: 0 ok, 1 error.
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
    add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import json
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
                at, files = await plan_download(hub, repo, args.paths)
                with progress_bar(sum(e.size for e in files), "download") as bar:
                    return await download_files(hub, at, files, root, bar.update)

    repo = parse_repo(args.repo, args.repo_type, args.revision)
    root = Path(args.to)
    result = trio.run(download, resolve_endpoint(args.endpoint), resolve_token(args.token), repo)
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(f"{result.commit}  {result.files} files, {result.bytes} bytes -> {root}")
    return 0
