"""Repos, revisions and commits over the metadata (docs/protocol.md, Hub API).

Synchronous (SQL, storage): routes call these through ``State.run``.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from xetfs.errors import Conflict, ValidationError
from xetfs.server.auth import Principal
from xetfs.server.context import State
from xetfs.server.errors import RepoNotFound, RevisionNotFound
from xetfs.server.metadata.store import Commit, FileRecord, Repo
from xetfs.server.services.commits import apply_commit_lines, make_commit

_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def repo_key(repo_type: str, repo_id: str) -> str:
    """How a CAS token names its repo (``Metadata.repo_by_key``)."""
    return f"{repo_type}:{repo_id}"


def lookup_repo(st: State, repo_type: str, repo_id: str) -> Repo:
    repo = st.meta.repo(repo_type, repo_id)
    if repo is None:
        raise RepoNotFound(f"{repo_type} repository {repo_id} not found")
    return repo


def refs_json(refs: dict[str, str], include_prs: bool) -> dict[str, Any]:
    """``GET …/refs`` from the ref table: branches, tags (``refs/tags/…``), pull requests (``refs/pr/…``)."""
    out: dict[str, Any] = {"branches": [], "tags": [], "converts": [], "pullRequests": []}
    for name, oid in refs.items():
        if name.startswith("refs/pr/"):
            if include_prs:
                out["pullRequests"].append({"name": name, "ref": name, "targetCommit": oid})
        elif name.startswith("refs/tags/"):
            out["tags"].append({"name": name[len("refs/tags/"):], "ref": name, "targetCommit": oid})
        else:
            out["branches"].append({"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid})
    return out


def resolve_rev(st: State, repo: Repo, rev: str) -> Commit:
    """A branch, ``refs/pr/N``, a tag or a commit sha -> the commit (RevisionNotFound otherwise)."""
    refs = st.meta.refs(repo)
    oid = refs.get(rev) or refs.get(f"refs/tags/{rev}") or refs.get(rev.removeprefix("refs/heads/"))
    commit = st.meta.commit(repo, oid or rev) if oid or _SHA_RE.match(rev) else None
    if commit is None:
        raise RevisionNotFound(f"revision {rev} not found in {repo.repo_id}")
    return commit


def repo_file(st: State, repo: Repo, sha256_hex: str) -> FileRecord | None:
    """An ``lfsFile`` may name only a Xet file this repo can already read (uploaded with one of its CAS tokens
    or in one of its commits): knowing a sha256 must not let a writer of repo B commit, and then read, a
    file that only repo A holds. Anything else is "not uploaded" (404), whether or not it exists."""
    return st.meta.file_by_sha256(sha256_hex, readable_by=repo.id)


def commit(st: State, who: Principal, repo: Repo, branch: str, body: bytes) -> Commit:
    """Apply an NDJSON commit body to the head of ``branch`` and move the branch (Conflict if it moved)."""
    head = resolve_rev(st, repo, branch)
    if branch not in st.meta.refs(repo) or branch.startswith("refs/tags/"):
        raise ValidationError(f"commits go to a branch, not {branch}")
    def put_blob(oid: str, data: bytes) -> None:
        st.storage.put_if_absent(f"blobs/{oid}", data)
    applied = apply_commit_lines(body, st.meta.tree(head.tree), head.oid, lambda sha: repo_file(st, repo, sha), put_blob)
    title = applied.header.summary or "update"
    new = make_commit(repo_key(repo.type, repo.repo_id), head.oid, applied.tree, title,
                      applied.header.description, who.id)
    if not st.meta.add_commit(repo, branch, new, applied.tree, [oid for oid, _ in applied.blobs]):
        raise Conflict(f"branch {branch} moved during the commit; retry")
    for oid, data in applied.blobs:     # a collection that ended between our first write and the commit may have
        put_blob(oid, data)             # deleted a blob we found already stored (docs/architecture.md, gc)
    st.audit.write(who.id, repo.repo_id, "commit", f"{new.oid} {' '.join(applied.changes)}", applied.size_bytes)
    return new


def history(st: State, repo: Repo, head: Commit, limit: int = 10000) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    c: Commit | None = head
    while c is not None and len(out) < limit:
        out.append({"id": c.oid, "title": c.title, "message": c.message, "date": iso(c.date),
                    "authors": [{"user": c.author or "unknown"}], "parents": [c.parent] if c.parent else []})
        c = st.meta.commit(repo, c.parent) if c.parent else None
    return out
