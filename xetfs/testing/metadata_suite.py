"""The conformance suite of the server's metadata (``xetfs.server.metadata.store.Metadata``), run against every
database backend (SQLite, PostgreSQL): ``check_metadata_contract(open_meta)``.

``open_meta()`` must return a NEW ``Metadata`` on the SAME empty database each time it is called: several
instances stand for several nodes (or restarts) sharing it. The suite checks migrations (first open
creates, later opens are no-ops, concurrent opens migrate once), the CAS index with 64-bit sizes, shard
registration as one transaction (a rejected shard leaves nothing), dedup lookups, tokens, settings
(get-or-create agreed by racing nodes), repos (a create race has one winner), branch heads moved by
compare-and-swap under threads racing through two instances (one winner per race, and committers that
retry on a lost race lose nothing), the repo binding tables, and deleting a repo.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from xetfs.core.hashing import MerkleHash
from xetfs.errors import AlreadyExists

OpenMeta = Callable[[], Any]


def _h(n: int) -> MerkleHash:
    return MerkleHash(n.to_bytes(4, "big") * 8)


def race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(i)`` for i < n in n threads released together -> results (exceptions as values)."""
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - reported to the caller as a value
            results[i] = exc
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def check_metadata_contract(open_meta: OpenMeta) -> None:
    from xetfs.server.metadata.store import SCHEMA_VERSION

    first = open_meta()
    assert first.migrated_from == 0, "a new database is created from scratch"
    nodes = race(3, lambda i: open_meta())
    assert all(not isinstance(n, Exception) for n in nodes), nodes
    assert [n.migrated_from for n in nodes] == [SCHEMA_VERSION] * 3, "migrations run once"
    a, b = nodes[0], nodes[1]
    try:
        _check_cas_index(a, b)
        _check_shards(a, b)
        _check_tokens_and_settings(a, b, open_meta)
        _check_repos(a, b)
        _check_branch_races(a, b)
        _check_binding_and_delete(a, b)
    finally:
        for m in [first, *nodes]:
            m.close()


def _check_cas_index(a: Any, b: Any) -> None:
    from xetfs.server.metadata.store import XorbRecord

    big = 5 * 2 ** 32 + 7                                   # 64-bit sizes and offsets survive
    rec = XorbRecord(_h(1), big, (_h(2), _h(3)), (100, 2 ** 32 - 1), (0, 50, big))
    assert a.add_xorb(rec, [_h(3)]) is True
    assert b.add_xorb(rec, [_h(3)]) is False, "a registered xorb is registered once"
    assert b.xorb(_h(1)) == rec and b.has_xorb(_h(1)) and b.xorb(_h(9)) is None
    assert b.dedup_entry(_h(3)) == (_h(1), None)
    assert b.dedup_entry(_h(99)) == (None, None)
    racers = [XorbRecord(_h(10), 10, (_h(11),), (10,), (0, 10)) for _ in range(6)]
    results = race(6, lambda i: (a, b)[i % 2].add_xorb(racers[i], [_h(11)]))
    assert sorted(results, key=str) == [False] * 5 + [True], results


def _check_shards(a: Any, b: Any) -> None:
    from xetfs.server.metadata.store import FileRecord, StoredTerm

    f = FileRecord(_h(4), 300, (StoredTerm(_h(1), 0, 2, 300),), "ab" * 32)
    assert a.add_shard("s1", 100, [f], [(_h(2), _h(1), _h(4)), (_h(3), _h(1), _h(4))]) is True
    assert b.add_shard("s1", 100, [f], [(_h(2), _h(1), _h(4))]) is False, "a shard is registered once"
    assert b.file(_h(4)) == f and b.file_by_sha256("AB" * 32) == f and b.file(_h(5)) is None
    assert b.dedup_entry(_h(2)) == (_h(1), _h(4))
    assert b.dedup_entry(_h(3)) == (_h(1), _h(4)), "a chunk indexed by its xorb gains its file later"
    before = a.counts()
    good = FileRecord(_h(6), 1, (), "cd" * 32)
    bad = FileRecord(_h(7), None, (), None)  # type: ignore[arg-type]  # NOT NULL violated by the 2nd file
    try:
        a.add_shard("s2", 1, [good, bad], [(_h(8), _h(1), _h(6))], uploader_repo=None)
    except Exception:  # noqa: BLE001 - each driver names the violation differently
        pass
    else:
        raise AssertionError("a shard with an invalid file was accepted")
    assert b.file(_h(6)) is None and b.file_by_sha256("cd" * 32) is None and b.dedup_entry(_h(8)) == (None, None)
    assert a.counts() == before, "a rejected shard leaves nothing behind"


def _check_tokens_and_settings(a: Any, b: Any, open_meta: OpenMeta) -> None:
    a.add_token("t1", "f" * 64, "read", "ns/r")
    rec = b.token("f" * 64)
    assert rec is not None and (rec.id, rec.scope, rec.repo) == ("t1", "read", "ns/r")
    assert b.token("0" * 64) is None
    try:
        b.add_token("t2", "f" * 64, "write", None)
    except Exception:  # noqa: BLE001 - a token secret hash is unique
        pass
    else:
        raise AssertionError("two tokens with one secret hash")
    assert b.setting("secret") is None
    values = race(4, lambda i: (a, b)[i % 2].setting("secret", f"value-{i}"))
    assert len(set(values)) == 1 and str(values[0]).startswith("value-"), values
    c = open_meta()
    try:
        assert c.setting("secret") == values[0], "settings persist"
    finally:
        c.close()


def _commit(parent: str | None, tag: str) -> Any:
    from xetfs.server.metadata.store import Commit

    oid = hashlib.sha1(f"{parent}:{tag}".encode()).hexdigest()
    return Commit(oid, 0, parent, hashlib.sha1(tag.encode()).hexdigest(), tag, "", 1.5, "admin")


def _check_repos(a: Any, b: Any) -> None:
    first = _commit(None, "initial")
    repo = a.create_repo("model", "ns/r", False, first, {})
    assert b.repo("model", "ns/r") == repo and b.repo_by_key("model:ns/r") == repo
    assert b.repo("dataset", "ns/r") is None and b.repo_by_key("nonsense") is None
    assert b.refs(repo) == {"main": first.oid} and b.commit(repo, first.oid) == replace(first, repo=repo.id)
    assert b.tree(first.tree) == {}
    results = race(4, lambda i: (a, b)[i % 2].create_repo("dataset", "ns/race", True,
                                                           _commit(None, f"race-{i}"), {}))
    won = [r for r in results if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, Exception)]
    assert len(won) == 1 and all(isinstance(r, AlreadyExists) for r in lost), results
    assert b.repo("dataset", "ns/race") == won[0] and won[0].private is True
    b.set_ref(repo, "dev", first.oid)
    assert a.refs(repo) == {"dev": first.oid, "main": first.oid}
    a.set_ref(repo, "dev", None)
    assert b.refs(repo) == {"main": first.oid}


def _check_branch_races(a: Any, b: Any) -> None:
    repo = a.repo("model", "ns/r")
    head = a.refs(repo)["main"]
    racers = [_commit(head, f"racer-{i}") for i in range(8)]
    results = race(8, lambda i: (a, b)[i % 2].add_commit(repo, "main", racers[i], {f"racer-{i}": {}}))
    assert results.count(True) == 1 and results.count(False) == 7, results
    winner = racers[results.index(True)]
    assert b.refs(repo)["main"] == winner.oid and b.commit(repo, winner.oid) is not None
    assert all(b.commit(repo, c.oid) is None for c in racers if c is not winner), "losers write nothing"
    assert a.add_commit(repo, "main", _commit(head, "stale"), {}) is False, "a stale parent never wins"
    assert a.add_commit(repo, "nope", _commit(winner.oid, "x"), {}) is False, "no such branch"

    per_writer, writers = 5, 4

    def writer(i: int) -> int:                               # retry on a lost race, like a Hub client on 412
        meta, losses = (a, b)[i % 2], 0
        for k in range(per_writer):
            while True:
                head_oid = meta.refs(repo)["main"]
                tree = dict(meta.tree(meta.commit(repo, head_oid).tree))
                tree[f"w{i}/{k}"] = {"size": k, "oid": f"{i}-{k}"}
                c = replace(_commit(head_oid, f"w{i}-{k}-{losses}"), tree=_tree_oid(tree))
                if meta.add_commit(repo, "main", c, tree):
                    break
                losses += 1
        return losses
    losses = race(writers, writer)
    assert all(isinstance(n, int) for n in losses), losses
    final = b.tree(b.commit(repo, b.refs(repo)["main"]).tree)
    want = {f"w{i}/{k}" for i in range(writers) for k in range(per_writer)}
    assert want <= final.keys(), f"lost updates: {sorted(want - final.keys())}"
    depth, c = 0, b.commit(repo, b.refs(repo)["main"])
    while c.parent is not None:
        depth, c = depth + 1, b.commit(repo, c.parent)
    assert depth == 1 + writers * per_writer, "history is one line of every winning commit"


def _tree_oid(tree: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(tree, sort_keys=True).encode()).hexdigest()


def _check_binding_and_delete(a: Any, b: Any) -> None:
    from xetfs.server.metadata.store import FileRecord

    repo = a.repo("model", "ns/r")
    other = a.repo("dataset", "ns/race")
    up = FileRecord(_h(20), 5, (), "ee" * 32)
    assert a.add_shard("s3", 10, [up], [], uploader_repo=other.id) is True
    assert b.file_reachable(other.id, _h(20)) and not b.file_reachable(repo.id, _h(20))
    assert not b.file_reachable(None, _h(20)), "uploaded but not committed: not public"
    head = b.refs(repo)["main"]
    tree = dict(b.tree(b.commit(repo, head).tree))
    tree["weights.bin"] = {"size": 5, "oid": "p", "sha256": "ee" * 32, "xet": str(_h(20))}
    c = replace(_commit(head, "xet file"), tree=_tree_oid(tree))
    assert b.add_commit(repo, "main", c, tree) is True
    assert a.file_reachable(repo.id, _h(20)) and a.file_reachable(None, _h(20))
    a.delete_repo(repo)
    assert b.repo("model", "ns/r") is None and not b.file_reachable(repo.id, _h(20))
    assert b.file_reachable(other.id, _h(20)), "other repos keep their bindings"
