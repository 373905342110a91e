"""Serve the Xet CAS API and a Hub-compatible API from one process (embedded or S3 storage).

Xorbs, shards and small files are stored as files under DIR/objects (written atomically), or with
--storage s3://BUCKET/PREFIX as objects in an S3-compatible bucket (--s3-endpoint URL, e.g. SeaweedFS or
MinIO; default AWS; credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION). Metadata is
SQLite (WAL) at DIR/metadata.sqlite3 and the server secret in DIR/secret, or with --db postgresql://… both
in PostgreSQL (schema created or migrated at start), so several nodes sharing that database and one bucket
act as one store; the audit log is in DIR/audit.log.
With S3 storage, clients read xorb bytes straight from the bucket through presigned URLs handed out in
reconstructions; --proxy-reads sends them through this server instead (for stores clients cannot reach).
The store is checked at start: a bad URL, an unreachable endpoint, rejected credentials or a missing
bucket stop the server with one line.
Regions: with several nodes, the Hub xet token routes can send each client to the CAS node of its region.
--region NAME names this node's region; --region-network CIDR=REGION maps client networks to regions and
--region-cas-url REGION=URL gives each region's CAS URL (both repeatable), or all of it in one JSON file
--regions FILE: {"region": "eu", "networks": {"10.1.0.0/16": "eu"}, "cas_urls": {"eu": "http://node-eu:8080"}}
(flags add to the file). The most specific matching network wins; a client in no configured network gets
this node's region URL, or without one this node (the URL it asked). The client address is the TCP peer, or
with --trust-forwarded-for the leftmost X-Forwarded-For entry (only behind a proxy that sets it). Example:
  --region eu --region-network 10.1.0.0/16=eu --region-network 10.2.0.0/16=us
  --region-cas-url eu=http://node-eu:8080 --region-cas-url us=http://node-us:8080
Bad networks, URLs or region names, and a mapped region without a CAS URL, stop the server with one line.
Without --token an admin token (global write) is generated on first start, stored in DIR/admin_token and
printed once. Once ready the server prints "listening on http://HOST:PORT" and writes DIR/server.json
(--port 0 picks a free port). With --log-format json these two stdout lines are JSON objects too:
{"event": "admin_token", "path": ..., "token": ...} and {"event": "listening", "url": ...}. SIGTERM or SIGINT stops it gracefully.

--gc-interval 6h runs the garbage collector of `xetfs gc` in the server every 6 hours (grace: --gc-grace,
default 24h; --keep-history N keeps only the data of the newest N commits of each ref, default all); with
several nodes one collection runs at a time (the others skip theirs).

A client gets --header-timeout (default 30s) to send a request's line and headers; idle keep-alive
connections close after 75 s and a request body that stops for 30 s gets 408 (docs/security.md, "Limits").

GET /health answers {"status": "ok"}; GET /metrics serves Prometheus text (names in docs/architecture.md,
"Metrics"). --log-format json logs one JSON object per line on stderr.

Point huggingface_hub at it with HF_ENDPOINT=http://HOST:PORT and HF_TOKEN=<token>; more tokens with
`xetfs token create --data DIR --scope read|write [--repo NS/NAME]`.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from xetfs.cli.durations import duration, history

HELP = "serve the Xet CAS and Hub API (embedded or S3 storage)"

log = logging.getLogger("xetfs.server")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="data directory (created if missing)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 = pick a free one)")
    parser.add_argument("--token", help="admin token (default: generated once and kept in DIR/admin_token)")
    parser.add_argument("--public-read", action="store_true", help="allow anonymous reads")
    parser.add_argument("--dedup-hmac", choices=("random", "none"), default="random",
                        help="global-dedup answers: chunk hashes keyed with a random key (default) or plain")
    parser.add_argument("--storage", metavar="URL",
                        help="object storage: s3://BUCKET/PREFIX (default: the directory DIR/objects)")
    parser.add_argument("--s3-endpoint", metavar="URL",
                        help="S3-compatible endpoint, e.g. http://127.0.0.1:8333 (default: AWS for AWS_REGION)")
    parser.add_argument("--db", metavar="URL",
                        help="metadata database: postgresql://USER@HOST:PORT/DBNAME, shared by several nodes "
                             "(default: SQLite at DIR/metadata.sqlite3)")
    parser.add_argument("--proxy-reads", action="store_true",
                        help="with S3 storage, serve xorb bytes through this server instead of presigned URLs")
    parser.add_argument("--region", metavar="NAME", help="this node's region (shown in /health and /metrics)")
    parser.add_argument("--region-network", metavar="CIDR=REGION", action="append", default=[],
                        help="clients in CIDR belong to REGION (repeatable; most specific network wins)")
    parser.add_argument("--region-cas-url", metavar="REGION=URL", action="append", default=[],
                        help="CAS URL the xet token routes give clients of REGION (repeatable)")
    parser.add_argument("--regions", metavar="FILE", type=Path,
                        help='the region map as JSON: {"region": NAME, "networks": {CIDR: REGION}, '
                             '"cas_urls": {REGION: URL}} (flags add to it)')
    parser.add_argument("--header-timeout", type=duration, default=30.0, metavar="DURATION",
                        help="close a connection that takes longer to send a request's line and headers "
                             "(default 30s; 0 = no limit)")
    parser.add_argument("--gc-interval", type=duration, default=0.0, metavar="DURATION",
                        help="run the garbage collector (as `xetfs gc`) every DURATION, e.g. 6h (default: never)")
    parser.add_argument("--gc-grace", type=duration, default=24 * 3600.0, metavar="DURATION",
                        help="grace period of those collections (default 24h)")
    parser.add_argument("--keep-history", type=history, default=None, metavar="N|all",
                        help="those collections keep the data of the newest N commits of every ref (default all)")
    parser.add_argument("--trust-forwarded-for", action="store_true",
                        help="region lookup uses the leftmost X-Forwarded-For entry instead of the peer address "
                             "(only behind a proxy that sets it)")


def region_map(args: argparse.Namespace) -> Any:
    """The checked ``regions.RegionMap`` from the --region* flags (one-line errors)."""
    from xetfs.server.regions import build_region_map

    return build_region_map(args.region, args.region_network, args.region_cas_url, args.regions,
                            args.trust_forwarded_for)


def open_storage(args: argparse.Namespace) -> Any:
    """The object store named by --storage (None = the embedded default), checked reachable. One-line errors."""
    from xetfs.server.stores.config import open_store

    return open_store(args.storage, args.s3_endpoint)


def open_metadata(args: argparse.Namespace) -> Any:
    """The metadata database named by --db (default SQLite under --data), reachable and migrated."""
    from xetfs.server.metadata.store import Metadata

    data_dir: Path = args.data.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    meta = Metadata(args.db or data_dir / "metadata.sqlite3")
    log.info("metadata in %r", meta.database)
    return meta


def admin_token(data_dir: Path, given: str | None) -> tuple[str, bool]:
    """-> (token, newly generated)."""
    from xetfs.osutil.atomic import write_atomic
    from xetfs.server.auth import new_token

    if given:
        return given, False
    path = data_dir / "admin_token"
    if path.exists():
        return path.read_text().strip(), False
    token = new_token()
    write_atomic(path, token.encode() + b"\n", 0o600)
    return token, True


def run(args: argparse.Namespace) -> int:
    import asyncio

    if not getattr(args, "debug", False):
        logging.getLogger("xetfs.server").setLevel(logging.INFO)
    regions = region_map(args)
    storage = open_storage(args)
    try:
        meta = open_metadata(args)
    except BaseException:
        if storage is not None:
            storage.close()
        raise
    return asyncio.run(_serve(args, storage, meta, regions))


async def _serve(args: argparse.Namespace, storage: Any, meta: Any, regions: Any) -> int:
    import asyncio
    import json
    import os
    import signal

    from aiohttp import web

    from xetfs.osutil.atomic import write_atomic
    from xetfs.server.app import HANDLER_LIMITS, State, make_app
    from xetfs.server.connection import HeadTimeoutRunner
    from xetfs.server.middleware import AccessLogger

    data_dir: Path = args.data.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    token, generated = admin_token(data_dir, args.token)
    if generated:
        _say(args, f"admin token (stored in {data_dir / 'admin_token'}): {token}",
             event="admin_token", path=str(data_dir / "admin_token"), token=token)
    state = State(data_dir, token, public_read=args.public_read, dedup_keyed=args.dedup_hmac == "random",
                  storage=storage, proxy_reads=args.proxy_reads, meta=meta, regions=regions)
    if regions.configured:
        log.info("%s", regions.describe())
    log.info("objects in %s; reads %s", storage or data_dir / "objects",
             "direct from the store" if state.direct_reads else "through this server")
    runner = HeadTimeoutRunner(make_app(state), header_timeout_s=args.header_timeout, access_log_class=AccessLogger,
                               access_log=logging.getLogger("xetfs.server.access"), handle_signals=False,
                               **HANDLER_LIMITS)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://{args.host}:{port}"
    write_atomic(data_dir / "server.json", json.dumps({"url": url, "host": args.host, "port": port,
                                                       "pid": os.getpid()}).encode())
    _say(args, f"listening on {url}", event="listening", url=url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    collector = asyncio.create_task(_collect_every(state, args.gc_interval, args.gc_grace,
                                                        args.keep_history, stop)) \
        if args.gc_interval > 0 else None
    await stop.wait()
    log.info("shutting down")
    if collector is not None:
        await collector                  # a collection under way finishes first
    await runner.cleanup()
    state.close()
    (data_dir / "server.json").unlink(missing_ok=True)
    return 0


def _say(args: argparse.Namespace, text: str, **fields: str) -> None:
    """One line on stdout: ``text``, or with ``--log-format json`` the object ``fields``."""
    import json

    print(json.dumps(fields) if getattr(args, "log_format", "text") == "json" else text, flush=True)


async def _collect_every(state: Any, interval_s: float, grace_s: float, keep_history: int | None,
                         stop: Any) -> None:
    """``xetfs serve --gc-interval``: a collection (``services.gc.collect``) every ``interval_s`` until ``stop``;
    a collection another node holds the lease for is skipped."""
    import asyncio
    import time

    from xetfs.errors import Conflict, XetError
    from xetfs.server.services.gc import collect

    while True:
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
            return
        except asyncio.TimeoutError:
            pass
        try:
            report = await state.run(collect, state.meta, state.storage, state.audit, grace_s=grace_s,
                                     now=time.time(), keep_history=keep_history)
            log.info("gc: %s", report.summary())
        except Conflict as exc:
            log.info("gc skipped: %s", exc)
        except (XetError, OSError) as exc:
            log.warning("gc failed: %s", exc)
