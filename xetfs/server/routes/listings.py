"""Listing and repo administration routes (docs/protocol.md, Hub API: listings and settings).

- ``GET /api/{models|datasets|spaces}?author=&search=&sort=&limit=&cursor=``: one page of repos; when more
  are left, ``Link: <same query, next cursor>; rel="next"`` (huggingface_hub follows it);
- ``GET /api/settings/repositories`` and ``/api/organizations/{ns}/settings/repositories``: ``hf repos ls``;
- ``PUT /api/{type}s/{ns}/{name}/settings`` ``{"private"|"visibility", "gated"}``;
- ``POST /api/repos/move`` ``{"fromRepo", "toRepo", "type"}`` (the old name keeps answering);
- ``POST /api/{type}s/{ns}/{name}/duplicate`` ``{"repository", "visibility"}`` -> ``{"url"}``;
- ``POST|DELETE /api/{type}s/{ns}/{name}/tag/{rev|tag}`` ``{"tag", "message"}``;
- ``POST /api/{type}s/{ns}/{name}/super-squash/{branch}`` ``{"message"}``.

Registered before ``routes.hub``, whose catch-all would otherwise take the per-repo paths. The logic is
``services.admin``.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aiohttp import web

from xetfs.errors import ValidationError
from xetfs.server.context import State, state_of
from xetfs.server.metadata.store import Repo
from xetfs.server.request import base_url, json_body, principal, repo_access
from xetfs.server.services import admin

_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_REPO = r"/api/{kind:models|datasets|spaces}/{ns:[^/]+}/{name:[^/]+}"


async def _caller(request: web.Request) -> Any:
    st = state_of(request)
    return await st.run(st.auth.hub_principal, request.headers.get("Authorization"))


async def _repo(request: web.Request, scope: str) -> tuple[State, Any, Repo]:
    repo_id = f"{request.match_info['ns']}/{request.match_info['name']}"
    who, repo = await repo_access(request, scope, request.match_info["kind"][:-1], repo_id)
    return state_of(request), who, repo


def _int(value: str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise ValidationError(f"{what} must be a non-negative integer")
    return int(value)


async def _list(request: web.Request) -> web.Response:
    st, q = state_of(request), request.query
    who = await _caller(request)
    start = _int(q.get("cursor"), "cursor") or 0
    page, nxt = await st.run(admin.list_page, st, who, request.match_info["kind"][:-1], q.get("author"),
                             q.get("search"), q.get("sort"), start, _int(q.get("limit"), "limit"))
    headers = {}
    if nxt is not None:
        headers["Link"] = f'<{base_url(request)}{request.rel_url.update_query(cursor=str(nxt))}>; rel="next"'
    return web.json_response(page, headers=headers)


async def _user_repos(request: web.Request) -> web.Response:
    st = state_of(request)
    who = await principal(request, "read", None)
    return web.json_response(await st.run(admin.user_repos, st, who, request.match_info.get("ns") or None))


async def _settings(request: web.Request) -> web.Response:
    st, who, repo = await _repo(request, "write")
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ValidationError("settings need a JSON object")
    await st.run(admin.update_settings, st, who, repo, body)
    return web.json_response({})


async def _move(request: web.Request) -> web.Response:
    st = state_of(request)
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("fromRepo"), str):
        raise ValidationError("move needs {\"fromRepo\", \"toRepo\", \"type\"}")
    repo_type = body.get("type") or "model"
    if repo_type not in _TYPE_PREFIX:
        raise ValidationError(f"unknown repo type {str(repo_type)[:20]!r}")
    who, repo = await repo_access(request, "write", repo_type, body["fromRepo"])
    await st.run(admin.move, st, who, repo, body.get("toRepo"))
    return web.json_response({})


async def _duplicate(request: web.Request) -> web.Response:
    st, who, repo = await _repo(request, "read")
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ValidationError("duplicate needs a JSON object")
    vis = body.get("visibility")
    dup = await st.run(admin.duplicate, st, who, repo, body.get("repository"),
                       None if vis is None else vis == "private")
    return web.json_response({"url": f"{base_url(request)}/{_TYPE_PREFIX[dup.type]}{dup.repo_id}"})


def _tail(request: web.Request, marker: str) -> str:
    return unquote(request.rel_url.raw_path.split(marker, 1)[1])


async def _tag(request: web.Request) -> web.Response:
    st, who, repo = await _repo(request, "write")
    if request.method == "DELETE":
        await st.run(admin.delete_tag, st, who, repo, _tail(request, "/tag/"))
        return web.json_response({})
    body = await json_body(request)
    await st.run(admin.create_tag, st, who, repo, _tail(request, "/tag/"),
                 body.get("tag") if isinstance(body, dict) else None)
    return web.json_response({})


async def _squash(request: web.Request) -> web.Response:
    st, who, repo = await _repo(request, "write")
    body = await json_body(request)
    message = str(body.get("message") or "squash") if isinstance(body, dict) else "squash"
    oid = await st.run(admin.squash, st, who, repo, _tail(request, "/super-squash/"), message)
    return web.json_response({"commitId": oid})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get(r"/api/{kind:models|datasets|spaces}", _list)
    r.add_get("/api/settings/repositories", _user_repos)
    r.add_get(r"/api/organizations/{ns:[^/]+}/settings/repositories", _user_repos)
    r.add_post("/api/repos/move", _move)
    r.add_put(_REPO + "/settings", _settings)
    r.add_post(_REPO + "/duplicate", _duplicate)
    r.add_route("POST", _REPO + r"/tag/{rev:.+}", _tag)
    r.add_route("DELETE", _REPO + r"/tag/{rev:.+}", _tag)
    r.add_post(_REPO + r"/super-squash/{branch:.+}", _squash)
