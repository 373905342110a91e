"""Discussions and pull requests (docs/protocol.md, Hub API: pull requests).

A pull request ``num`` is a discussion whose head is the ref ``refs/pr/{num}``: it starts at the target
branch's head, commits go to it like to a branch (``create_pr=1`` on a commit opens one and commits to it),
and merging moves the target branch:

- fast-forward when the target has not moved since the pull request's base (the target becomes the head);
- otherwise a three-way merge of the snapshots (base = the last commit both histories share): a path changed
  on one side only takes that side; a path changed on both sides differently is a conflict, refused with 409
  and listed in ``filesWithConflicts``; the merge commit's parent is the target's head.

Synchronous (SQL): routes call these through ``State.run``.
"""
from __future__ import annotations

import json
from typing import Any

from xetfs.errors import Conflict, ValidationError, XetError
from xetfs.server.auth import Principal
from xetfs.server.context import State
from xetfs.server.metadata.discussions import PR_REF_PREFIX, Discussion, DiscussionStore, Event, pr_ref
from xetfs.server.metadata.database import Tx
from xetfs.server.metadata.store import Commit, Metadata, Repo
from xetfs.server.services import prdiff, repos
from xetfs.server.services.commits import make_commit

MAX_HISTORY = 100_000                # commits walked to find a merge base


class MergeConflict(XetError):
    """Both sides of a pull request changed the same paths differently."""

    status = 409


def store(st: State) -> DiscussionStore:
    return DiscussionStore(st.meta.database)


def _summary(body: bytes) -> str:
    try:
        first = json.loads(body.split(b"\n", 1)[0])
        return str(first["value"].get("summary") or "update")
    except (ValueError, KeyError, TypeError, AttributeError):
        return "update"


def _is_branch(st: State, repo: Repo, name: str) -> bool:
    return not name.startswith("refs/") and name in st.meta.refs(repo)


def commit(st: State, who: Principal, repo: Repo, rev: str, body: bytes, create_pr: bool) -> tuple[Commit, int | None]:
    """A Hub commit: to a branch, to an open pull request ``refs/pr/N``, or (``create_pr``) to a new pull
    request against branch ``rev`` -> (commit, pull request number or None)."""
    if not create_pr:
        new = repos.commit(st, who, repo, rev, body)
        if rev.startswith(PR_REF_PREFIX) and rev[len(PR_REF_PREFIX):].isdigit():
            store(st).add_event(repo.id, int(rev[len(PR_REF_PREFIX):]), "commit", who.id,
                                {"subject": new.title, "oid": new.oid})
        return new, None
    if not _is_branch(st, repo, rev):
        raise ValidationError(f"a pull request targets a branch, not {rev}")
    head = repos.resolve_rev(st, repo, rev)
    pr = store(st).create(repo.id, True, _summary(body), who.id, rev, head.oid, [])
    try:
        new = repos.commit(st, who, repo, pr_ref(pr.num), body)
    except BaseException:
        store(st).discard(repo.id, pr.num)
        raise
    store(st).add_event(repo.id, pr.num, "commit", who.id, {"subject": new.title, "oid": new.oid})
    st.audit.write(who.id, repo.repo_id, "create_pr", f"{pr.num} {new.oid}")
    return new, pr.num


def open_discussion(st: State, who: Principal, repo: Repo, title: str, description: str,
                    pull_request: bool) -> Discussion:
    if not title.strip():
        raise ValidationError("a discussion needs a title")
    head = repos.resolve_rev(st, repo, "main") if pull_request else None
    d = store(st).create(repo.id, pull_request, title.strip(), who.id, "main" if pull_request else None,
                         head.oid if head else None, [("comment", comment_data(description, who.id))],
                         status="draft" if pull_request else "open")
    st.audit.write(who.id, repo.repo_id, "create_discussion", str(d.num))
    return d


def comment_data(text: str, author: str | None) -> dict[str, Any]:
    return {"edited": False, "hidden": False, "numEdits": 0, "editors": [author] if author else [],
            "latest": {"raw": text, "html": text, "author": {"name": author or "deleted"}}}


def set_status(st: State, who: Principal, repo: Repo, num: int, status: str, comment: str) -> Event:
    d = store(st).get(repo.id, num)
    if status not in ("open", "closed"):
        raise ValidationError("status must be 'open' or 'closed'")
    if d.status == "merged":
        raise ValidationError(f"pull request {num} is merged")
    if comment.strip():
        store(st).add_event(repo.id, num, "comment", who.id, comment_data(comment.strip(), who.id))
    return store(st).add_event(repo.id, num, "status-change", who.id, {"status": status}, status=status)


def merge_base(meta: Metadata, repo: Repo, a: Commit, b: Commit) -> Commit | None:
    """The newest commit in the history of both ``a`` and ``b`` (histories are chains of first parents)."""
    seen: set[str] = set()
    c: Commit | None = a
    while c is not None and len(seen) < MAX_HISTORY:
        seen.add(c.oid)
        c = meta.commit(repo, c.parent) if c.parent else None
    c = b
    for _ in range(MAX_HISTORY):
        if c is None or c.oid in seen:
            return c
        c = meta.commit(repo, c.parent) if c.parent else None
    return None


def merge_trees(base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Three-way merge of snapshots -> (merged tree, conflicting paths, sorted)."""
    out: dict[str, Any] = {}
    conflicts: list[str] = []
    for path in sorted(set(base) | set(ours) | set(theirs)):
        b, o, t = base.get(path), ours.get(path), theirs.get(path)
        if o == t or t == b:
            pick = o
        elif o == b:
            pick = t
        else:
            conflicts.append(path)
            continue
        if pick is not None:
            out[path] = pick
    return out, conflicts


def diff(st: State, repo: Repo, d: Discussion) -> str:
    """What the pull request changes (``prdiff``): from the parent of its first commit (the target's head
    when it was opened, for an open or a merged one alike) to its head."""
    if not d.is_pr:
        return ""
    first = next((e.data.get("oid") for e in store(st).events(repo.id, d.num) if e.type == "commit"), None)
    start = st.meta.commit(repo, str(first)) if first else None
    base = st.meta.commit(repo, start.parent) if start is not None and start.parent else None
    head_oid = st.meta.refs(repo).get(pr_ref(d.num))
    head = st.meta.commit(repo, head_oid) if head_oid else None
    if base is None or head is None:
        return ""
    return prdiff.tree_diff(st.storage, st.meta.tree(base.tree), st.meta.tree(head.tree))


def conflicting_files(st: State, repo: Repo, d: Discussion) -> list[str]:
    if not d.is_pr or d.status not in ("open", "draft") or d.target is None:
        return []
    try:
        target = repos.resolve_rev(st, repo, d.target)
        head = repos.resolve_rev(st, repo, pr_ref(d.num))
    except XetError:
        return []
    base = merge_base(st.meta, repo, target, head)
    if base is None or base.oid in (target.oid, head.oid):
        return []
    return merge_trees(st.meta.tree(base.tree), st.meta.tree(target.tree), st.meta.tree(head.tree))[1]


def merge(st: State, who: Principal, repo: Repo, num: int, comment: str) -> str:
    """Merge pull request ``num`` into its target branch -> the target's new head."""
    d = store(st).get(repo.id, num)
    if not d.is_pr or d.target is None:
        raise ValidationError(f"discussion {num} is not a pull request")
    if d.status not in ("open", "draft"):
        raise ValidationError(f"pull request {num} is {d.status}")
    target = repos.resolve_rev(st, repo, d.target)
    head = repos.resolve_rev(st, repo, pr_ref(num))
    base = merge_base(st.meta, repo, target, head)
    if base is None:
        raise MergeConflict(f"pull request {num} shares no history with {d.target}")
    if comment.strip():
        store(st).add_event(repo.id, num, "comment", who.id, comment_data(comment.strip(), who.id))
    if base.oid in (target.oid, head.oid):           # fast-forward (or nothing to bring)
        new_oid = head.oid if base.oid == target.oid else target.oid
        if not store(st).merged(repo.id, num, d.target, target.oid, new_oid, who.id):
            raise Conflict(f"branch {d.target} moved during the merge; retry")
    else:
        tree, conflicts = merge_trees(st.meta.tree(base.tree), st.meta.tree(target.tree), st.meta.tree(head.tree))
        if conflicts:
            raise MergeConflict(f"Merge conflict in {len(conflicts)} file(s): {', '.join(conflicts[:20])}")
        mc = make_commit(repos.repo_key(repo.type, repo.repo_id), target.oid, tree,
                         f"Merge pull request #{num}: {d.title}", "", who.id)

        def insert(tx: Tx) -> None:
            Metadata.insert_commit(tx, mc, repo.id, tree)
        if not store(st).merged(repo.id, num, d.target, target.oid, mc.oid, who.id, insert):
            raise Conflict(f"branch {d.target} moved during the merge; retry")
        new_oid = mc.oid
    st.audit.write(who.id, repo.repo_id, "merge_pr", f"{num} {d.target} {new_oid}")
    return new_oid
