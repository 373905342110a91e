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
import hashlib
import secrets
from pathlib import Path, PurePosixPath
from typing import Any

from xetfs.core.gitblob import git_blob_hasher

HELP = "download files of a repo revision into a directory"

BLOCK_BYTES = 32 * 1024 * 1024     # one FileReader.read; the next block is read ahead meanwhile
FILES_IN_PARALLEL = 4


def configure(parser: argparse.ArgumentParser) -> None:
    from xetfs.client.config import add_connection_arguments

    parser.add_argument("repo", metavar="REPO", help="org/name or datasets/org/name")
    parser.add_argument("paths", metavar="PATH", nargs="*", help="files or directories in the repo (default: all)")
    parser.add_argument("--to", required=True, metavar="DIR", help="local destination directory")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_connection_arguments(parser)


def select(entries: list[Any], paths: list[str]) -> list[Any]:
    """The file entries named by ``paths`` (a file, or everything under a directory); all when empty."""
    from xetfs.errors import NotFound

    files = [e for e in entries if e.is_file]
    if not paths:
        return files
    chosen: dict[str, Any] = {}
    for p in paths:
        want = p.strip("/")
        hits = [e for e in files if not want or e.path == want or e.path.startswith(want + "/")]
        if not hits:
            raise NotFound(f"{p}: not in the repo")
        chosen.update((e.path, e) for e in hits)
    return [chosen[k] for k in sorted(chosen)]


def local_path(root: Path, repo_path: str) -> Path:
    """``root / repo_path``, refusing paths that would escape ``root``."""
    from xetfs.errors import ValidationError

    parts = PurePosixPath(repo_path).parts
    if not parts or PurePosixPath(repo_path).is_absolute() or any(p in ("..", ".", "") for p in parts):
        raise ValidationError(f"refusing unsafe path from the server: {repo_path!r}")
    return root.joinpath(*parts)


def run(args: argparse.Namespace) -> int:
    import json

    import trio

    from xetfs.client.config import parse_repo, resolve_endpoint, resolve_token

    repo = parse_repo(args.repo, args.repo_type, args.revision)
    root = Path(args.to)
    result = trio.run(_download, resolve_endpoint(args.endpoint), resolve_token(args.token), repo, args.paths, root)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['commit']}  {result['files']} files, {result['bytes']} bytes -> {root}")
    return 0


async def _download(endpoint: str, token: str | None, repo: Any, paths: list[str], root: Path) -> dict[str, Any]:
    import trio

    from xetfs.client.cas import CasClient, TokenProvider
    from xetfs.transport.tasks import single_error
    from xetfs.cli.upload_cmd import progress_bar
    from xetfs.read.reader import Fetcher
    from xetfs.client.hub import open_hub

    with single_error():
        async with open_hub(endpoint, token) as hub:
            commit = await hub.revision_sha(repo)
            at = repo.at(commit)
            files = select(await hub.list_tree(at, recursive=True), paths)
            cas = CasClient(TokenProvider(lambda: hub.xet_token(at, "read")), hub.http, retry=hub.retry)
            limiter = trio.CapacityLimiter(FILES_IN_PARALLEL)
            with progress_bar(sum(e.size for e in files), "download") as bar:
                async with trio.open_nursery() as nursery:
                    fetcher = Fetcher(cas, nursery=nursery)
                    async with trio.open_nursery() as files_nursery:
                        for entry in files:
                            files_nursery.start_soon(_one_file, hub, at, fetcher, entry, root, limiter, bar.update)
                    nursery.cancel_scope.cancel()   # stop readahead still running
    return {"commit": commit, "files": len(files), "bytes": sum(e.size for e in files)}


async def _one_file(hub: Any, repo: Any, fetcher: Any, entry: Any, root: Path, limiter: Any, progress: Any) -> None:
    import trio

    from xetfs.errors import IntegrityError

    async with limiter:
        dest = local_path(root, entry.path)
        await trio.Path(dest.parent).mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.xetfs-{secrets.token_hex(4)}.tmp")
        # Xet files are checked by sha256; regular files by their git blob sha1 (hub-api §2)
        digest = hashlib.sha256() if entry.xet_hash is not None else git_blob_hasher(entry.size)
        try:
            async with await trio.open_file(tmp, "wb") as f:
                async def write(data: bytes) -> None:
                    await trio.to_thread.run_sync(digest.update, data)
                    await f.write(data)
                    progress(len(data))

                if entry.xet_hash is not None:
                    size = await _read_xet(fetcher, entry, write)
                else:
                    size = await hub.resolve_into(repo, entry.path, write)
            expected = entry.sha256 if entry.xet_hash is not None else entry.oid
            if size != entry.size or (expected and digest.hexdigest() != expected):
                raise IntegrityError(f"{entry.path}: downloaded {size} bytes that do not match the listing "
                                     f"({entry.size} bytes, {expected})")
            await trio.Path(tmp).rename(dest)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.Path(tmp).unlink(missing_ok=True)
            raise


async def _read_xet(fetcher: Any, entry: Any, write: Any) -> int:
    from xetfs.read.reader import FileReader

    reader = FileReader(fetcher.cas, entry.xet_hash, entry.size, fetcher=fetcher)
    offset = 0
    while offset < entry.size:
        data = await reader.read(offset, BLOCK_BYTES, fetch_end=min(entry.size, offset + 2 * BLOCK_BYTES))
        if not data:
            break
        await write(data)
        offset += len(data)
    return offset


