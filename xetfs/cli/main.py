"""``xetfs`` entry point: parses arguments and dispatches to one module per subcommand.

Each subcommand module under ``xetfs.cli`` defines ``HELP`` (one line), ``configure(parser)`` and
``run(args) -> int``; it imports heavy stacks (trio, httpx, pyfuse3, aiohttp) inside ``run`` so that
``xetfs --help`` stays fast. Errors print one line (``xetfs: error: ...``); ``--debug`` shows tracebacks.
``--log-format json`` writes logs (and that error line) as one JSON object per line (``xetfs.cli.logformat``).

Exit codes: 0 success, 1 failure (the one-line error says why), 2 bad usage, 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from xetfs.cli.logformat import FORMATS, configure_logging
from xetfs.osutil.malloc import reuse_large_buffers

# subcommand -> module under xetfs.cli
COMMANDS: dict[str, str] = {
    "hash": "hash_cmd",
    "chunks": "chunks_cmd",
    "inspect": "inspect_cmd",
    "serve": "serve_cmd",
    "fsck": "fsck_cmd",
    "gc": "gc_cmd",
    "token": "token_cmd",
    "upload": "upload_cmd",
    "download": "download_cmd",
    "prefetch": "prefetch_cmd",
    "cache": "cache_cmd",
    "mount": "mount_cmd",
    "umount": "umount_cmd",
    "stats": "stats_cmd",
}

BULK = {"mount", "serve", "upload", "download", "prefetch"}   # commands that move whole xorbs: xetfs.osutil.malloc
DAEMONS = {"mount", "serve"}     # long-running commands: their --help shows --log-format
LOG_FORMAT_HELP = "log lines as text (default) or as one JSON object per line"


def _available() -> dict[str, ModuleType]:
    mods: dict[str, ModuleType] = {}
    for name, mod in COMMANDS.items():
        try:
            mods[name] = importlib.import_module(f"xetfs.cli.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"xetfs.cli.{mod}":
                raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xetfs",
        description="Mount Xet-backed model and dataset repositories as directories, and serve a Xet CAS + Hub API.",
    )
    parser.add_argument("--debug", action="store_true", help="verbose logs and full tracebacks")
    parser.add_argument("--log-format", choices=FORMATS, default="text", help=LOG_FORMAT_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, mod in _available().items():
        p = sub.add_parser(name, help=getattr(mod, "HELP", None), description=mod.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.add_argument("--log-format", choices=FORMATS, default=argparse.SUPPRESS,
                       help=LOG_FORMAT_HELP if name in DAEMONS else argparse.SUPPRESS)
        mod.configure(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``xetfs ARGV`` (None: this process's command line; only then are process-wide malloc settings made,
    so a program calling ``main([...])``, such as the tests, keeps its own allocator)."""
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    configure_logging(debug, args.log_format)
    # numpy's OpenBLAS starts a worker thread that spins for its first tenths of a second (about 0.15 s of
    # CPU per process, measured); xetfs does no linear algebra, so no BLAS thread (before numpy is imported)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if argv is None and args.command in BULK:   # the process's own command, not a call inside another program
        reuse_large_buffers()
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line for users, the traceback with --debug
        if debug:
            raise
        if args.log_format == "json":
            logging.getLogger("xetfs").error("%s", exc)
        else:
            print(f"xetfs: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
