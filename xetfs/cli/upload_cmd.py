"""Upload local files and directories to a repository as one commit.

Examples:
  xetfs upload org/model weights.safetensors config.json
  xetfs upload datasets/org/data ./shards --path-in-repo train/ --message "add shards"

Each PATH is a file or a directory. A directory is uploaded recursively (``.git`` skipped), keeping the
paths relative to it under --path-in-repo; a file goes to --path-in-repo/<its name>. With one file and a
--path-in-repo that does not end in ``/``, that is the file's exact path in the repo.
Big or binary files go through Xet (chunked, deduplicated against what the server already stores);
small text files go inline in the commit, as the server decides. The shards of each upload are kept under
--cache-dir (bounded), so the next upload from this machine deduplicates against them without asking. Exit codes: 0 ok, 1 error.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xetfs.client.config import RepoRef
    from xetfs.write.upload import UploadResult

HELP = "upload files or directories to a repo as one commit"


def configure(parser: argparse.ArgumentParser) -> None:
    from xetfs.client.config import add_connection_arguments

    parser.add_argument("repo", metavar="REPO", help="org/name or datasets/org/name")
    parser.add_argument("paths", metavar="PATH", nargs="+", help="local files or directories")
    parser.add_argument("--path-in-repo", default="", help="destination directory (or file name) in the repo")
    parser.add_argument("--message", "-m", default=None, help="commit summary")
    parser.add_argument("--description", default="", help="commit description")
    parser.add_argument("--parent-commit", default=None, help="fail unless the branch is at this commit")
    parser.add_argument("--create-repo", action="store_true", help="create the repo if it does not exist")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--cache-dir", default=None,
                        help="keeps the shards this machine uploaded, to deduplicate the next upload against "
                             "(default ~/.cache/xetfs, shared with mounts)")
    add_connection_arguments(parser)


def plan_files(paths: list[str], path_in_repo: str) -> list[tuple[str, str]]:
    """(local file, path in repo) for every file under ``paths``; raises on a missing path or a clash."""
    from xetfs.errors import NotFound, ValidationError

    prefix = path_in_repo.strip("/")
    single_file = len(paths) == 1 and os.path.isfile(paths[0]) and prefix and not path_in_repo.endswith("/")
    out: list[tuple[str, str]] = []
    for p in paths:
        top = Path(p)
        if top.is_file():
            out.append((str(top), prefix if single_file else _join(prefix, top.name)))
        elif top.is_dir():
            for root, dirs, names in os.walk(top, followlinks=False):
                dirs[:] = sorted(d for d in dirs if d != ".git")
                for name in sorted(names):
                    local = Path(root) / name
                    if local.is_file():
                        out.append((str(local), _join(prefix, local.relative_to(top).as_posix())))
        else:
            raise NotFound(f"{p}: no such file or directory")
    seen: dict[str, str] = {}
    for source, dest in out:
        if dest in seen:
            raise ValidationError(f"{source} and {seen[dest]} would both be uploaded to {dest!r}")
        seen[dest] = source
    return out


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def run(args: argparse.Namespace) -> int:
    import json

    import trio

    from xetfs.client.config import parse_repo, resolve_endpoint, resolve_token
    from xetfs.errors import ValidationError

    repo = parse_repo(args.repo, args.repo_type, args.revision)
    files = plan_files(args.paths, args.path_in_repo)
    if not files:
        raise ValidationError("nothing to upload: the given directories hold no files")
    message = args.message or f"Upload {len(files)} file{'s' if len(files) != 1 else ''} with xetfs"
    total = sum(os.path.getsize(local) for local, _ in files)
    result = trio.run(_upload, resolve_endpoint(args.endpoint), resolve_token(args.token), repo, files, message,
                      args, total)
    s = result.stats
    if args.json:
        print(json.dumps({"commit": result.commit_oid, "url": result.commit_url, "files": s.files,
                          "total_bytes": s.total_bytes, "new_bytes": s.new_bytes, "deduped_bytes": s.deduped_bytes,
                          "xorb_bytes_uploaded": s.xorb_bytes_uploaded, "xorbs_uploaded": s.xorbs_uploaded,
                          "regular_bytes": s.regular_bytes, "shard_bytes": s.shard_bytes,
                          "xorbs_already_stored": s.xorbs_already_stored, "dedup_queries": s.dedup_queries,
                          "dedup_hits": s.dedup_hits, "deduped_by_source": s.deduped_by_source}))
    else:
        print(f"{result.commit_oid}  {s.files} files, {s.total_bytes} bytes "
              f"({s.xorb_bytes_uploaded} new xorb bytes, {s.deduped_bytes} bytes deduplicated)")
    return 0


async def _upload(endpoint: str, token: str | None, repo: RepoRef, files: list[tuple[str, str]], message: str,
                  args: argparse.Namespace, total: int) -> UploadResult:
    from xetfs.cli.progress import progress_bar
    from xetfs.client.hub import open_hub
    from xetfs.read.cache import default_cache_dir
    from xetfs.transport.tasks import single_error
    from xetfs.write.shardcache import ShardCache, shard_cache_dir
    from xetfs.write.upload import upload_files

    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()

    with single_error():
        async with open_hub(endpoint, token) as hub:
            if args.create_repo:
                await hub.create_repo(repo, exist_ok=True)
            with progress_bar(total, "upload") as bar:
                return await upload_files(hub, repo, [(local, dest) for local, dest in files], message,
                                          description=args.description, parent_commit=args.parent_commit,
                                          progress=bar.update,
                                          shard_cache=ShardCache(shard_cache_dir(cache_dir, endpoint)))
