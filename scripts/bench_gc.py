"""Benchmark ``xetfs gc``: time and peak RSS of one collection, on SQLite and on PostgreSQL; prints ONE JSON
object (docs/architecture.md, "Garbage collection").

A store is built through the server's own metadata API (``Metadata.add_xorb``, ``add_shard``,
``create_repo``, ``add_commit``) and a local object store: FULL = 10,000 xorbs (one small object each),
2,000 files of 5 terms each, 200 commits in 20 repos (each commit's tree names 10 files). Half the repos are
then deleted, so about half the files and xorbs are garbage; ``services.gc.collect`` runs with no grace.
Shard objects are not stored (the collector keeps a shard it cannot read), so this measures mark + sweep of
files and xorbs.

Each size runs in its own subprocess (peak RSS is per process). The baseline is the same store at half the
size, measured in the same run: ``time_ratio`` = full / half (2.0 = linear) and ``per_object_ratio`` = the
per-object time of full / half (1.0 = linear).

Usage: .venv/bin/python scripts/bench_gc.py [--scale 1.0] [--no-postgres]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

XORBS, FILES, COMMITS, REPOS, TERMS = 10_000, 2_000, 200, 20, 5


def _h(tag: str, i: int) -> bytes:
    return hashlib.sha256(f"{tag}:{i}".encode()).digest()


def build_and_collect(db: str, data: Path, scale: float) -> dict[str, float]:
    from xetfs.core.hashing import MerkleHash
    from xetfs.server.metadata.store import FileRecord, Metadata, StoredTerm, XorbRecord
    from xetfs.server.services.commits import make_commit
    from xetfs.server.services.gc import collect
    from xetfs.server.stores.local import LocalStorage

    n_xorbs, n_files, n_commits = int(XORBS * scale), int(FILES * scale), int(COMMITS * scale)
    meta = Metadata(db)
    storage = LocalStorage(data / "objects")
    for i in range(n_xorbs):
        h = MerkleHash(_h("x", i))
        meta.add_xorb(XorbRecord(h, 64, (MerkleHash(_h("c", i)),), (4096,), (0, 64)))
        storage.put_if_absent(f"xorbs/{h}", bytes(64))
    files = []
    for f in range(n_files):
        terms = tuple(StoredTerm(MerkleHash(_h("x", (f * TERMS + t) % n_xorbs)), 0, 1, 4096) for t in range(TERMS))
        files.append(FileRecord(MerkleHash(_h("f", f)), 4096 * TERMS, terms, _h("s", f).hex()))
    for k in range(0, n_files, 100):
        meta.add_shard(_h("shard", k).hex(), 1000, files[k:k + 100], [])
    per_repo = max(1, n_commits // REPOS)
    repos = []
    for r in range(REPOS):
        first = make_commit(f"model:b/r{r}", None, {}, "init", "", "bench")
        repo = meta.create_repo("model", f"b/r{r}", False, first, {})
        head = first.oid
        for c in range(per_repo):
            idx = (r * per_repo + c) * 10
            tree = {f"f{j}.bin": {"size": 1, "oid": "0" * 40, "sha256": files[(idx + j) % n_files].sha256,
                                  "xet": str(files[(idx + j) % n_files].hash)} for j in range(10)}
            new = make_commit(f"model:b/r{r}", head, tree, f"c{c}", "", "bench")
            assert meta.add_commit(repo, "main", new, tree)
            head = new.oid
        repos.append(repo)
    for repo in repos[REPOS // 2:]:
        meta.delete_repo(repo)
    t0 = time.perf_counter()
    report = collect(meta, storage, None, grace_s=0, now=time.time() + 1)
    elapsed = time.perf_counter() - t0
    meta.close()
    objects = n_xorbs + n_files + n_commits
    return {"gc_s": elapsed, "objects": objects, "per_object_us": elapsed / objects * 1e6,
            "xorbs_deleted": len(report.xorbs), "files_deleted": len(report.files),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(db: str, data: str, scale: float) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", db, data, str(scale)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def _pair(make_db: Callable[[str], str], tmp: Path, scale: float) -> dict[str, object]:
    half = _child(make_db("half"), str(tmp / "half"), scale / 2)
    full = _child(make_db("full"), str(tmp / "full"), scale)
    return {"half": half, "full": full, "time_ratio": round(full["gc_s"] / half["gc_s"], 3),
            "per_object_ratio": round(full["per_object_us"] / half["per_object_us"], 3),
            "rss_ratio": round(full["peak_rss_mib"] / half["peak_rss_mib"], 3)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(build_and_collect(sys.argv[2], Path(sys.argv[3]), float(sys.argv[4]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the store size (default 1.0)")
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = ap.parse_args()
    result: dict[str, object] = {"scale": args.scale}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        result["sqlite"] = _pair(lambda name: str(tmp / f"{name}.sqlite3"), tmp / "sqlite", args.scale)
        if not args.no_postgres:
            import psycopg

            from xetfs.testing.services import postgres
            with postgres(tmp / "pg") as pg:
                def make_db(name: str) -> str:
                    with psycopg.connect(pg.dsn, autocommit=True) as conn:
                        conn.execute(f"CREATE DATABASE bench_{name}")
                    return f"postgresql://postgres@127.0.0.1:{pg.port}/bench_{name}"
                result["postgres"] = _pair(make_db, tmp / "pg", args.scale)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
