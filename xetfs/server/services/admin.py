"""Listings and repo administration (docs/protocol.md, Hub API: listings and settings).

- ``list_page``: ``list_models`` / ``list_datasets`` / ``list_spaces`` — filtered by author and search (SQL),
  by what the caller may read (a private repo only for a token that may read it), sorted (``id`` ascending;
  ``lastModified``, ``createdAt``, ``downloads``, ``likes``, ``trendingScore`` newest/largest first, ties by
  id), cut into pages at an offset cursor; the route turns "more left" into a ``Link: <…>; rel="next"``.
- ``user_repos``: ``hf repos ls`` (every type, with the bytes of ``main``'s files as storage).
- ``update_settings`` (``private``/``visibility``, ``gated``), ``move``, ``duplicate`` (a new repo whose
  first commit holds the source head's tree: no data is copied, the files are shared), tags, ``squash``.

Synchronous (SQL): routes call these through ``State.run``.
"""
from __future__ import annotations

from typing import Any

from xetfs.errors import Forbidden, Unauthorized, ValidationError
from xetfs.server.auth import Principal
from xetfs.server.context import State
from xetfs.server.errors import RevisionNotFound
from xetfs.server.metadata.repoadmin import ListedRepo, RepoAdmin
from xetfs.server.metadata.store import Repo
from xetfs.server.names import repo_spec
from xetfs.server.services import repos
from xetfs.server.services.commits import make_commit
from xetfs.server.services.repos import iso
from xetfs.server.names import check_repo_id

DEFAULT_PAGE = 100
MAX_PAGE = 1000
TAG_PREFIX = "refs/tags/"
_DESCENDING = {"lastModified", "createdAt", "downloads", "likes", "trendingScore"}


def admin(st: State) -> RepoAdmin:
    return RepoAdmin(st.meta.database)


def may_read(st: State, who: Principal | None, repo: Repo) -> bool:
    """``who`` (None = anonymous) may read ``repo``; an anonymous caller never reads a private repo."""
    if repo.private and (who is None or who.anonymous):
        return False
    try:
        st.auth.require(who, "read", repo_spec(repo.type, repo.repo_id))
    except (Unauthorized, Forbidden):
        return False
    return True


def repo_json(st: State, item: ListedRepo) -> dict[str, Any]:
    r = item.repo
    out: dict[str, Any] = {"_id": r.repo_id, "id": r.repo_id, "author": r.repo_id.split("/")[0], "sha": item.sha,
                           "lastModified": iso(item.last_modified), "createdAt": iso(r.created),
                           "private": r.private, "gated": gated(st, r),
                           "disabled": False, "downloads": 0, "likes": 0, "tags": []}
    if r.type == "model":
        out["modelId"] = r.repo_id
    return out


def list_page(st: State, who: Principal | None, repo_type: str, author: str | None, search: str | None,
              sort: str | None, start: int, limit: int | None) -> tuple[list[dict[str, Any]], int | None]:
    """-> (this page's repos as Hub JSON, the next page's start or None)."""
    found = [x for x in admin(st).listing(repo_type, author, search) if may_read(st, who, x.repo)]
    key = sort or "id"
    if key in ("lastModified", "createdAt"):
        found.sort(key=lambda x: (-(x.last_modified if key == "lastModified" else x.repo.created), x.repo.repo_id))
    elif key not in _DESCENDING and key != "id":
        raise ValidationError(f"unknown sort {key!r}")
    size = min(limit or DEFAULT_PAGE, MAX_PAGE)
    page = found[start:start + size]
    nxt = start + size if start + size < len(found) else None
    return [repo_json(st, x) for x in page], nxt


def user_repos(st: State, who: Principal | None, namespace: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for repo_type in ("model", "dataset", "space"):
        for x in admin(st).listing(repo_type, namespace, None):
            if not may_read(st, who, x.repo):
                continue
            head = st.meta.commit(x.repo, x.sha) if x.sha else None
            tree = st.meta.tree(head.tree) if head is not None else {}
            out.append({"id": x.repo.repo_id, "type": repo_type, "updatedAt": iso(x.last_modified),
                        "visibility": "private" if x.repo.private else "public",
                        "storage": sum(int(e.get("size", 0)) for e in tree.values()), "storagePercent": 0})
    return out


def update_settings(st: State, who: Principal, repo: Repo, body: dict[str, Any]) -> None:
    private = body.get("private")
    if "visibility" in body:
        if body["visibility"] not in ("private", "public"):
            raise ValidationError("visibility must be 'private' or 'public'")
        private = body["visibility"] == "private"
    if private is not None:
        admin(st).set_private(repo, bool(private))
    if "gated" in body:
        gated = body["gated"]
        if gated not in ("auto", "manual", False):
            raise ValidationError("gated must be 'auto', 'manual' or false")
        admin(st).set_setting(repo, "gated", "false" if gated is False else str(gated))
    st.audit.write(who.id, repo.repo_id, "update_settings", " ".join(f"{k}={body[k]}" for k in sorted(body)))


def _split(repo_id: Any) -> str:
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValidationError(f"invalid repo id {str(repo_id)[:100]!r}")
    ns, name = repo_id.split("/")
    check_repo_id(ns, name)
    return repo_id


def move(st: State, who: Principal, repo: Repo, to_id: Any) -> None:
    new_id = _split(to_id)
    st.auth.require(who, "write", repo_spec(repo.type, new_id))
    admin(st).move(repo, new_id)
    st.audit.write(who.id, repo.repo_id, "move_repo", new_id)


def duplicate(st: State, who: Principal, src: Repo, to_id: Any, private: bool | None) -> Repo:
    new_id = _split(to_id)
    st.auth.require(who, "write", repo_spec(src.type, new_id))
    head = repos.resolve_rev(st, src, "main")
    tree = st.meta.tree(head.tree)
    first = make_commit(repos.repo_key(src.type, new_id), None, tree, f"Duplicate from {src.repo_id}", "", who.id)
    dup = st.meta.create_repo(src.type, new_id, src.private if private is None else private, first, tree)
    st.audit.write(who.id, new_id, "duplicate_repo", f"from {src.repo_id} {head.oid}")
    return dup


def create_tag(st: State, who: Principal, repo: Repo, rev: str, tag: Any) -> None:
    if not isinstance(tag, str) or not tag or tag.startswith("refs/") or ".." in tag or "\x00" in tag:
        raise ValidationError(f"invalid tag name {str(tag)[:100]!r}")
    target = repos.resolve_rev(st, repo, rev)
    admin(st).create_ref(repo, TAG_PREFIX + tag, target.oid)
    st.audit.write(who.id, repo.repo_id, "create_tag", f"{tag} {target.oid}")


def delete_tag(st: State, who: Principal, repo: Repo, tag: str) -> None:
    if TAG_PREFIX + tag not in st.meta.refs(repo):
        raise RevisionNotFound(f"tag {tag} not found")
    st.meta.set_ref(repo, TAG_PREFIX + tag, None)
    st.audit.write(who.id, repo.repo_id, "delete_tag", tag)


def squash(st: State, who: Principal, repo: Repo, branch: str, message: str) -> str:
    if branch.startswith("refs/") or branch not in st.meta.refs(repo):
        raise ValidationError(f"only a branch can be squashed, not {branch}")
    head = repos.resolve_rev(st, repo, branch)
    tree = st.meta.tree(head.tree)
    root = make_commit(repos.repo_key(repo.type, repo.repo_id), None, tree, message, "", who.id)
    admin(st).squash(repo, branch, head.oid, root, tree)
    st.audit.write(who.id, repo.repo_id, "super_squash", f"{branch} {head.oid} -> {root.oid}")
    return root.oid


def gated(st: State, repo: Repo) -> str | bool:
    value = admin(st).setting(repo, "gated")
    return value if value not in (None, "false") else False
