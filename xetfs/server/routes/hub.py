"""Hub API routes (docs/protocol.md, Hub API): repos, revisions, trees, preupload, NDJSON commits, xet tokens, refs.

``/api/{models|datasets|spaces}/{ns}/{name}[/{op}/{rev}[/{path}]]`` is parsed from the RAW path, one
segment at a time, so that a revision containing an encoded ``/`` (``refs%2Fpr%2F1``) stays one segment.
Every handler authenticates the Hub token (``request.principal``), checks its scope for the repo
(read: info/tree/paths-info/refs/commits/read token; write: preupload/commit/write token/branches), then
calls ``services.repos`` and ``services.commits``. Errors: RepoNotFound / RevisionNotFound / EntryNotFound in ``X-Error-Code``.

Xet token routes answer the JSON body ``{"casUrl","accessToken","exp"}`` AND the ``X-Xet-*``
headers (uploads hang without the body, downloads fail without the headers). ``casUrl`` is this server, or
the CAS node for the client's region (``regions.RegionMap.cas_url``, from ``xetfs serve --region*``).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from xetfs.errors import AlreadyExists, NotFound, ValidationError
from xetfs.server.auth import Principal
from xetfs.server.context import State, state_of
from xetfs.server.errors import EntryNotFound, RepoNotFound, RevisionNotFound
from xetfs.server.metadata.store import Commit, Repo
from xetfs.server.request import SMALL_JSON_BYTES, base_url, json_body, json_object, principal, read_body, \
    repo_access
from xetfs.server.services import admin, pulls, repos
from xetfs.server.services.commits import list_tree, make_commit, paths_info, upload_mode
from xetfs.server.services.repos import iso, resolve_rev
from xetfs.server.names import REPO_TYPES, URL_PREFIX, check_branch, check_repo_id, repo_spec, valid_repo_part

MAX_COMMIT_BODY_BYTES = 1024 ** 3


# ---------------------------------------------------------------------------------------- repos

def _repo_id_from_body(body: Any) -> tuple[str, str]:
    if not isinstance(body, dict):
        raise ValidationError("create/delete needs a JSON object")
    name, org = body.get("name"), body.get("organization") or "user"
    repo_type = body.get("type") or "model"
    if not isinstance(name, str) or not isinstance(org, str) or repo_type not in URL_PREFIX:
        raise ValidationError("create/delete needs a valid name, organization and type")
    return repo_type, check_repo_id(org, name)


async def _create_repo(request: web.Request) -> web.Response:
    st = state_of(request)
    caller = await principal(request, "write", None)         # authenticated before the body is read
    body = await json_body(request, SMALL_JSON_BYTES)
    repo_type, repo_id = _repo_id_from_body(body)
    who = st.auth.require(caller, "write", repo_spec(repo_type, repo_id))
    first = make_commit(f"{repo_type}:{repo_id}", None, {}, "initial commit", "", who.id)
    url = f"{base_url(request)}/{URL_PREFIX[repo_type]}{repo_id}"
    try:
        await st.run(st.meta.create_repo, repo_type, repo_id, bool(body.get("private")), first, {})
    except AlreadyExists as exc:      # huggingface_hub's exist_ok reads "url" from the 409 body too
        return web.json_response({"error": str(exc), "url": url}, status=409)
    await st.run(st.audit.write, who.id, repo_id, "create_repo", repo_type)
    return web.json_response({"url": url, "name": repo_id, "id": repo_id})


async def _delete_repo(request: web.Request) -> web.Response:
    st = state_of(request)
    await principal(request, "write", None)                   # authenticated before the body is read
    repo_type, repo_id = _repo_id_from_body(await json_body(request, SMALL_JSON_BYTES))
    who, repo = await repo_access(request, "write", repo_type, repo_id)
    await st.run(st.meta.delete_repo, repo)
    await st.run(st.audit.write, who.id, repo_id, "delete_repo", repo_type)
    return web.json_response({})


async def _validate_yaml(request: web.Request) -> web.Response:
    """``upload_folder`` checks a README.md's metadata first; this server accepts any (from a caller who may
    read)."""
    await principal(request, "read", None)
    await read_body(request, 1 << 20)
    return web.json_response({"errors": [], "warnings": []})


async def _whoami(request: web.Request) -> web.Response:
    who = await principal(request, "read", None)
    return web.json_response({"type": "user", "name": who.id, "fullname": who.id, "orgs": [],
                              "auth": {"type": "access_token",
                                       "accessToken": {"displayName": who.id, "role": who.scope}}})


# ---------------------------------------------------------------------------------------- /api/{type}s/{repo}/...

@dataclass
class RepoRequest:
    request: web.Request
    st: State
    repo_type: str
    repo_id: str
    op: str | None
    rev: str
    path: str

    @property
    def repo_key(self) -> str:
        return repos.repo_key(self.repo_type, self.repo_id)


def _parse_repo_request(request: web.Request) -> RepoRequest:
    segs = request.rel_url.raw_path.split("/")[2:]     # [kind, ns, name, op, rev, *path]
    kind = segs[0]
    if len(segs) < 3 or not segs[1] or not segs[2]:
        raise RepoNotFound("expected /api/{type}s/{namespace}/{name}")
    op = (unquote(segs[3]) or None) if len(segs) > 3 else None
    rev = unquote(segs[4]) if len(segs) > 4 and segs[4] else "main"
    path = "/".join(unquote(s) for s in segs[5:]).strip("/")
    ns, name = unquote(segs[1]), unquote(segs[2])
    if not valid_repo_part(ns) or not valid_repo_part(name):
        raise RepoNotFound(f"no repository {ns[:100]!r}/{name[:100]!r}")
    return RepoRequest(request, state_of(request), REPO_TYPES[kind], f"{ns}/{name}", op, rev, path)


async def _repo_and_commit(rr: RepoRequest, scope: str) -> tuple[Principal, Repo, Commit]:
    who, repo = await repo_access(rr.request, scope, rr.repo_type, rr.repo_id)
    commit = await rr.st.run(resolve_rev, rr.st, repo, rr.rev)
    return who, repo, commit


async def _info(rr: RepoRequest) -> web.Response:
    _, repo, commit = await _repo_and_commit(rr, "read")
    tree = await rr.st.run(rr.st.meta.tree, commit.tree)
    name = repo.repo_id                 # the current name, also when asked by an old one (a moved repo)
    return web.json_response({
        "_id": name, "id": name, "modelId": name, "author": name.split("/")[0], "sha": commit.oid,
        "lastModified": iso(commit.date), "createdAt": iso(repo.created), "private": repo.private,
        "gated": await rr.st.run(admin.gated, rr.st, repo), "disabled": False, "downloads": 0, "likes": 0,
        "tags": [],
        "siblings": [{"rfilename": p} for p in sorted(tree)]})


async def _tree(rr: RepoRequest) -> web.Response:
    _, _, commit = await _repo_and_commit(rr, "read")
    tree = await rr.st.run(rr.st.meta.tree, commit.tree)
    recursive = rr.request.query.get("recursive", "false").lower() in ("1", "true")
    try:
        return web.json_response(list_tree(tree, commit.tree, rr.path, recursive))
    except NotFound as exc:
        raise EntryNotFound(str(exc)) from None


async def _paths_info(rr: RepoRequest) -> web.Response:
    _, _, commit = await _repo_and_commit(rr, "read")
    if rr.request.content_type == "application/json":
        paths = (await json_object(rr.request)).get("paths", [])
    else:
        paths = (await rr.request.post()).getall("paths", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise ValidationError('paths-info needs {"paths": [PATH, ...]}')
    tree = await rr.st.run(rr.st.meta.tree, commit.tree)
    return web.json_response(paths_info(tree, commit.tree, paths))


async def _preupload(rr: RepoRequest) -> web.Response:
    _, _, commit = await _repo_and_commit(rr, "write")
    tree = await rr.st.run(rr.st.meta.tree, commit.tree)
    files = (await json_object(rr.request)).get("files")
    if not isinstance(files, list) or not all(_preupload_item(f) for f in files):
        raise ValidationError('preupload needs {"files": [{"path": str, "size": int, "sample": base64}, ...]}')
    out = []
    for f in files:
        path, size = f["path"], f.get("size", 0)
        try:
            sample = base64.b64decode(f.get("sample") or "", validate=True)
        except ValueError:
            raise ValidationError(f"preupload {path[:100]!r}: sample is not base64") from None
        mode = upload_mode(size, sample)
        have = tree.get(path)
        oid = (have.get("sha256") if mode == "lfs" else have["oid"]) if have else None
        out.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
    return web.json_response({"files": out, "commitOid": commit.oid})


def _preupload_item(f: Any) -> bool:
    return (isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("sample", ""), (str, type(None)))
            and isinstance(f.get("size", 0), int) and not isinstance(f.get("size", 0), bool) and f.get("size", 0) >= 0)


async def _commit(rr: RepoRequest) -> web.Response:
    who, repo, _ = await _repo_and_commit(rr, "write")
    body = await read_body(rr.request, MAX_COMMIT_BODY_BYTES)
    create_pr = rr.request.query.get("create_pr", "").lower() in ("1", "true")
    commit, pr_num = await rr.st.run(pulls.commit, rr.st, who, repo, rr.rev, body, create_pr)
    rr.st.metrics.inc("xetfs_hub_commits_total")
    repo_url = f"{base_url(rr.request)}/{URL_PREFIX[rr.repo_type]}{rr.repo_id}"
    return web.json_response({"commitOid": commit.oid, "commitUrl": f"{repo_url}/commit/{commit.oid}",
                              "pullRequestUrl": f"{repo_url}/discussions/{pr_num}" if pr_num else None})


async def _xet_token(rr: RepoRequest) -> web.Response:
    scope = "write" if rr.op == "xet-write-token" else "read"
    who, repo = await repo_access(rr.request, scope, rr.repo_type, rr.repo_id)
    if not (scope == "write" and rr.request.query.get("create_pr")):
        await rr.st.run(resolve_rev, rr.st, repo, rr.rev)
    token, exp = await rr.st.run(rr.st.auth.issue_cas_token, who, rr.repo_key, rr.rev, scope)
    cas = rr.st.regions.cas_url(rr.request.remote, rr.request.headers.get("X-Forwarded-For"),
                                base_url(rr.request))
    headers = {"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(exp)}
    return web.json_response({"casUrl": cas, "accessToken": token, "exp": exp}, headers=headers)


async def _refs(rr: RepoRequest) -> web.Response:
    _, repo = await repo_access(rr.request, "read", rr.repo_type, rr.repo_id)
    refs = await rr.st.run(rr.st.meta.refs, repo)
    return web.json_response(repos.refs_json(refs, rr.request.query.get("include_prs", "") in ("1", "true")))


async def _commits(rr: RepoRequest) -> web.Response:
    _, repo, head = await _repo_and_commit(rr, "read")
    return web.json_response(await rr.st.run(repos.history, rr.st, repo, head))


async def _create_branch(rr: RepoRequest) -> web.Response:
    _, repo = await repo_access(rr.request, "write", rr.repo_type, rr.repo_id)
    check_branch(rr.rev)
    body = await json_body(rr.request, SMALL_JSON_BYTES)
    start_at = body.get("startingPoint") if isinstance(body, dict) else None
    start = await rr.st.run(resolve_rev, rr.st, repo, start_at if isinstance(start_at, str) and start_at else "main")
    if rr.rev in await rr.st.run(rr.st.meta.refs, repo):
        raise AlreadyExists(f"branch {rr.rev} exists")
    await rr.st.run(rr.st.meta.set_ref, repo, rr.rev, start.oid)
    return web.json_response({})


async def _delete_branch(rr: RepoRequest) -> web.Response:
    _, repo = await repo_access(rr.request, "write", rr.repo_type, rr.repo_id)
    if rr.rev == "main" or rr.rev not in await rr.st.run(rr.st.meta.refs, repo):
        raise RevisionNotFound(f"cannot delete branch {rr.rev}")
    await rr.st.run(rr.st.meta.set_ref, repo, rr.rev, None)
    return web.json_response({})


_OPS = {("GET", None): _info, ("GET", "revision"): _info, ("GET", "tree"): _tree,
        ("POST", "paths-info"): _paths_info, ("POST", "preupload"): _preupload, ("POST", "commit"): _commit,
        ("GET", "xet-read-token"): _xet_token, ("GET", "xet-write-token"): _xet_token, ("GET", "refs"): _refs,
        ("GET", "commits"): _commits, ("POST", "branch"): _create_branch, ("DELETE", "branch"): _delete_branch}


async def _repo_api(request: web.Request) -> web.Response:
    rr = _parse_repo_request(request)
    method = "GET" if request.method == "HEAD" else request.method
    handler = _OPS.get((method, rr.op))
    if handler is None:
        raise NotFound(f"no route {request.method} {request.path}")
    return await handler(rr)


def setup(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/repos/create", _create_repo)
    r.add_delete("/api/repos/delete", _delete_repo)
    r.add_get("/api/whoami-v2", _whoami)
    r.add_post("/api/validate-yaml", _validate_yaml)
    r.add_route("*", r"/api/{kind:models|datasets|spaces}/{tail:.+}", _repo_api)
