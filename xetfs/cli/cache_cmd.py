"""Inspect and manage a disk cache dir: list, size, prune, verify, clear, unpin, export and import.

Examples:
  xetfs cache ls --cache-dir /var/cache/xetfs
  xetfs cache du
  xetfs cache prune --max-size 20G
  xetfs cache prune --older-than 7d
  xetfs cache verify
  xetfs cache unpin org/model --revision v1
  xetfs cache export org/model --revision v1 -o model-v1.tar
  xetfs cache import model-v1.tar --cache-dir /var/cache/xetfs

ls      every revision with a snapshot in the cache dir (written by each mount and by `xetfs prefetch`): repo,
        revision, commit, and per file its cached bytes against its size and whether it is pinned.
du      bytes of the chunk entries, layouts, regular files and snapshots; how much of it is pinned.
prune   frees space: unpinned entries last used before --older-than, then the least recently used ones until
        the unpinned bytes fit in --max-size (default: 10G, a mount's default --cache-size). Pinned files,
        small regular files and snapshots stay.
verify  re-hashes every chunk of every entry and every regular file, checks every layout and snapshot;
        damaged ones are removed (the next read refetches them) or only listed with --dry-run. Exit 1 when
        any was damaged.
clear   empties the read cache: entries, layouts, regular files, snapshots. Pins stay (the next
        `xetfs prefetch` of a pinned file warms it again) unless --pins. A writable mount's staging area
        (changes not uploaded yet), the shard cache and the logs are never touched.
unpin   releases pinned files: of REPO at --revision (PATHs: only those), or all with --all.
export  writes a bundle (a tar) of one revision: its snapshot, layouts, chunk entries and small regular
        files, each re-hashed while written; every file of the revision must be cached (`xetfs prefetch`
        first; regular files over 4 MiB are left out).
import  checks every member of a bundle and installs it (--pin pins its files); a mount of that revision then
        starts from the cache dir with the server unreachable.

Running mounts may use the cache dir meanwhile: what they lose to prune/verify/clear they refetch.
Exit codes: 0 ok, 1 error or damaged entries found, 2 bad usage.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from xetfs.cli.durations import duration, size

HELP = "inspect and manage the disk cache (ls, du, prune, verify, clear, unpin, export, import)"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", default=None, help="disk cache directory (default ~/.cache/xetfs)")
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    revision = argparse.ArgumentParser(add_help=False)
    revision.add_argument("--repo-type", default=None, help="repository type (default: model, or REPO's prefix)")
    revision.add_argument("--revision", default=None, help="branch, tag or commit, as mounted (default: main)")
    ls = sub.add_parser("ls", parents=[common], help="what is cached, per repo, revision and file")
    ls.add_argument("repo", metavar="REPO", nargs="?", help="only this repo")
    sub.add_parser("du", parents=[common], help="bytes used, and how much is pinned")
    prune = sub.add_parser("prune", parents=[common], help="free space (unpinned, least recently used first)")
    prune.add_argument("--max-size", type=size, default=None,
                       help="keep at most this many unpinned bytes (default 10G unless --older-than is given)")
    prune.add_argument("--older-than", type=duration, default=None, metavar="AGE",
                       help="remove unpinned entries unused for AGE (e.g. 12h, 7d)")
    verify = sub.add_parser("verify", parents=[common], help="re-hash every entry; remove damaged ones")
    verify.add_argument("--dry-run", action="store_true", help="only list damaged entries")
    clear = sub.add_parser("clear", parents=[common], help="empty the read cache (pins stay unless --pins)")
    clear.add_argument("--pins", action="store_true", help="drop the pins too")
    unpin = sub.add_parser("unpin", parents=[common, revision], help="release pinned files")
    unpin.add_argument("repo", metavar="REPO", nargs="?", help="the repo whose files to unpin")
    unpin.add_argument("paths", metavar="PATH", nargs="*", help="only these files or directories")
    unpin.add_argument("--all", action="store_true", help="release every pin")
    export = sub.add_parser("export", parents=[common, revision], help="write a verified bundle of a revision")
    export.add_argument("repo", metavar="REPO", help="org/name or datasets/org/name")
    export.add_argument("-o", "--output", required=True, metavar="BUNDLE", help="the tar file to write")
    imp = sub.add_parser("import", parents=[common], help="check and install a bundle")
    imp.add_argument("bundle", metavar="BUNDLE", help="a tar file written by xetfs cache export")
    imp.add_argument("--pin", action="store_true", help="pin the bundle's files")


def run(args: argparse.Namespace) -> int:
    from xetfs.read.cache import default_cache_dir

    cache_dir = Path(args.cache_dir).expanduser().resolve() if args.cache_dir else default_cache_dir()
    if args.action not in ("import",) and not cache_dir.is_dir():
        raise FileNotFoundError(f"no cache dir at {cache_dir}")
    return int(_ACTIONS[args.action](args, cache_dir))


def _print(args: argparse.Namespace, obj: Any, text: str) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True) if args.json else text)


def _ls(args: argparse.Namespace, cache_dir: Path) -> int:
    from xetfs.client.config import parse_repo
    from xetfs.read.cache_admin import listing

    want = parse_repo(args.repo) if args.repo else None
    out, lines = [], []
    for snap, states in listing(cache_dir):
        if want is not None and (snap.repo.repo_type, snap.repo.repo_id) != (want.repo_type, want.repo_id):
            continue
        complete = sum(s.cached_bytes == s.size and s.xet for s in states)
        out.append({"repo_type": snap.repo.repo_type, "repo_id": snap.repo.repo_id, "revision": snap.repo.revision,
                    "commit": snap.commit, "files": [asdict(s) for s in states]})
        lines.append(f"{snap.repo.repo_type}s/{snap.repo.repo_id}@{snap.repo.revision}  commit {snap.commit}  "
                     f"{complete}/{len(states)} files complete, {sum(s.cached_bytes for s in states)}/"
                     f"{sum(s.size for s in states)} bytes, {sum(s.pinned for s in states)} pinned")
        for s in states:
            mark = "pinned" if s.pinned else "regular" if not s.xet else ""
            lines.append(f"  {s.cached_bytes:>14}/{s.size:<14} {mark:<7} {s.path}")
    _print(args, out, "\n".join(lines) if lines else "(no revision is cached)")
    return 0


def _du(args: argparse.Namespace, cache_dir: Path) -> int:
    from xetfs.read.cache_admin import usage

    u = usage(cache_dir)
    _print(args, {**asdict(u), "total_bytes": u.total_bytes},
           f"{u.total_bytes} bytes in {cache_dir}: {u.chunk_bytes} in {u.chunk_entries} chunk entries, "
           f"{u.layout_bytes} in {u.layouts} layouts, {u.regular_bytes} in {u.regular_files} regular files, "
           f"{u.snapshot_bytes} in {u.snapshots} snapshots; "
           f"{u.pinned_bytes} pinned ({u.pinned_files} files)")
    return 0


def _prune(args: argparse.Namespace, cache_dir: Path) -> int:
    from xetfs.read.cache_admin import prune

    max_bytes = args.max_size if args.max_size is not None or args.older_than is not None else size("10G")
    p = prune(cache_dir, max_bytes=max_bytes, older_than_s=args.older_than)
    _print(args, asdict(p), f"removed {p.entries} entries ({p.bytes} bytes) and {p.temp_files} stale temp files; "
                            f"{p.kept_bytes} bytes kept ({p.pinned_bytes} pinned)")
    return 0


def _verify(args: argparse.Namespace, cache_dir: Path) -> int:
    from xetfs.cli.progress import progress_bar
    from xetfs.read.cache_admin import usage, verify

    u = usage(cache_dir)
    with progress_bar(u.chunk_bytes + u.layout_bytes, "verify") as bar:
        v = verify(cache_dir, remove=not args.dry_run, progress=bar.update)
    verb = "found" if args.dry_run else "removed"
    _print(args, asdict(v), "\n".join([*(f"damaged: {b}" for b in v.bad),
                                       f"checked {v.checked} files ({v.checked_bytes} bytes): "
                                       f"{len(v.bad)} damaged {verb}"]))
    return 1 if v.bad else 0


def _clear(args: argparse.Namespace, cache_dir: Path) -> int:
    from xetfs.read.cache_admin import clear

    freed = clear(cache_dir, pins=args.pins)
    _print(args, {"freed_bytes": freed, "pins_dropped": args.pins},
           f"freed {freed} bytes in {cache_dir}{'' if args.pins else ' (pins kept)'}")
    return 0


def _unpin(args: argparse.Namespace, cache_dir: Path) -> int:
    from xetfs.client.config import parse_repo
    from xetfs.errors import NotFound, ValidationError
    from xetfs.read.download import select
    from xetfs.read.pins import remove_pins
    from xetfs.read.snapshot import load_snapshot

    if args.all == bool(args.repo):
        raise ValidationError("give REPO (with --revision and PATHs as needed) or --all")
    hashes = None
    if args.repo:
        repo = parse_repo(args.repo, args.repo_type, args.revision)
        snap = load_snapshot(cache_dir, repo)
        if snap is None:
            raise NotFound(f"no snapshot of {repo.repo_id}@{repo.revision} in {cache_dir}")
        hashes = [bytes(e.xet_hash) for e in select(snap.entries, args.paths) if e.xet_hash is not None]
    n = remove_pins(cache_dir, hashes)
    _print(args, {"unpinned": n}, f"unpinned {n} files")
    return 0


def _export(args: argparse.Namespace, cache_dir: Path) -> int:
    from xetfs.cli.progress import progress_bar
    from xetfs.client.config import parse_repo
    from xetfs.read.bundle import export_bundle

    repo = parse_repo(args.repo, args.repo_type, args.revision)
    with progress_bar(0, "export") as bar:
        info = export_bundle(cache_dir, repo, Path(args.output), progress=bar.update)
    _print(args, asdict(info), f"{info.repo}@{info.revision} (commit {info.commit}): {info.files} files, "
                               f"{info.bytes} bytes, {info.entries} entries -> {args.output}")
    return 0


def _import(args: argparse.Namespace, cache_dir: Path) -> int:
    from xetfs.cli.progress import progress_bar
    from xetfs.read.bundle import import_bundle

    bundle = Path(args.bundle)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with progress_bar(bundle.stat().st_size, "import") as bar:
        info = import_bundle(bundle, cache_dir, pin=args.pin, progress=bar.update)
    _print(args, asdict(info), f"{info.repo}@{info.revision} (commit {info.commit}): {info.files} files, "
                               f"{info.bytes} bytes, {info.entries} entries installed in {cache_dir}")
    return 0


_ACTIONS = {"ls": _ls, "du": _du, "prune": _prune, "verify": _verify, "clear": _clear, "unpin": _unpin,
            "export": _export, "import": _import}
