"""Discussions and pull request routes (docs/protocol.md, Hub API: pull requests), in the Hub's JSON shapes.

- ``GET  /api/{type}s/{ns}/{name}/discussions?p=&type=&status=&author=`` -> ``{"discussions", "count", "start"}``
  (50 per page, the newest first);
- ``POST .../discussions`` ``{"title", "description", "pullRequest"}`` -> ``{"num", "url", ...}``;
- ``GET  .../discussions/{num}`` -> the details with ``events``, ``diff`` (``services.prdiff``), ``changes.base``,
  ``filesWithConflicts``; a pull request opened here starts as ``draft`` (``status`` ``open`` publishes it);
- ``POST .../discussions/{num}/comment`` ``{"comment"}`` -> ``{"newMessage": event}``;
  ``.../status`` ``{"status", "comment"}`` -> ``{"newStatus": event}``; ``.../title`` ``{"title"}`` ->
  ``{"newTitle": event}``; ``.../merge`` ``{"comment"}`` -> ``{"oid": new head}`` (409 on a conflict).

Reads need the read scope on the repo, every change the write scope. The logic is ``services.pulls``.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from xetfs.errors import ValidationError
from xetfs.server.context import State, state_of
from xetfs.server.metadata.discussions import Discussion, Event, pr_ref
from xetfs.server.metadata.store import Repo
from xetfs.server.request import base_url, json_body, repo_access
from xetfs.server.services import pulls
from xetfs.server.services.repos import iso

PAGE_SIZE = 50
_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def _num(request: web.Request) -> int:
    raw = request.match_info["num"]
    if not raw.isdigit() or int(raw) <= 0:
        raise ValidationError(f"invalid discussion number {raw[:20]!r}")
    return int(raw)


async def _repo(request: web.Request, scope: str) -> tuple[State, Any, Repo]:
    repo_id = f"{request.match_info['ns']}/{request.match_info['name']}"
    who, repo = await repo_access(request, scope, request.match_info["kind"][:-1], repo_id)
    return state_of(request), who, repo


def _author(name: str | None) -> dict[str, Any]:
    return {"name": name or "deleted", "type": "user", "isOwner": False}


def _summary(d: Discussion, repo: Repo, num_comments: int = 0) -> dict[str, Any]:
    return {"num": d.num, "title": d.title, "status": d.status, "author": _author(d.author),
            "createdAt": iso(d.created), "repo": {"name": repo.repo_id, "type": repo.type},
            "isPullRequest": d.is_pr, "numComments": num_comments, "pinned": False, "topReactions": []}


def event_json(num: int, e: Event) -> dict[str, Any]:
    data = dict(e.data)
    if e.type == "comment":
        data["latest"] = {**data["latest"], "updatedAt": iso(e.created)}
        data.setdefault("history", [data["latest"]])
        data.setdefault("reactions", [])
    return {"id": f"{num:08x}{e.seq:08x}", "type": e.type, "createdAt": iso(e.created),
            "author": _author(e.author), "data": data}


async def _list(request: web.Request) -> web.Response:
    st, _, repo = await _repo(request, "read")
    q = request.query
    kind, status, author = q.get("type", "all"), q.get("status", "all"), q.get("author")
    page = int(q.get("p", "0")) if q.get("p", "0").isdigit() else 0
    found = [d for d in await st.run(pulls.store(st).all, repo.id)
             if (kind == "all" or d.is_pr == (kind == "pull_request"))
             and (status == "all" or d.status == status) and (author is None or d.author == author)]
    start = page * PAGE_SIZE
    return web.json_response({"discussions": [_summary(d, repo) for d in found[start:start + PAGE_SIZE]],
                              "count": len(found), "start": start,
                              "numClosedDiscussions": sum(d.status == "closed" for d in found)})


async def _create(request: web.Request) -> web.Response:
    st, who, repo = await _repo(request, "write")
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("title"), str):
        raise ValidationError("a discussion needs {\"title\": ...}")
    d = await st.run(pulls.open_discussion, st, who, repo, body["title"], str(body.get("description") or ""),
                     bool(body.get("pullRequest")))
    url = f"{base_url(request)}/{_TYPE_PREFIX[repo.type]}{repo.repo_id}/discussions/{d.num}"
    return web.json_response({**_summary(d, repo), "url": url})


async def _details(request: web.Request) -> web.Response:
    st, _, repo = await _repo(request, "read")
    num = _num(request)
    d = await st.run(pulls.store(st).get, repo.id, num)
    events = await st.run(pulls.store(st).events, repo.id, num)
    out = {**_summary(d, repo, sum(e.type == "comment" for e in events)),
           "events": [event_json(num, e) for e in events], "diff": await st.run(pulls.diff, st, repo, d)}
    if d.is_pr:
        refs = await st.run(st.meta.refs, repo)
        out["changes"] = {"base": f"refs/heads/{d.target}", "headRef": pr_ref(num),
                          "headCommitId": refs.get(pr_ref(num))}
        if d.merge_commit:
            out["changes"]["mergeCommitId"] = d.merge_commit
        out["filesWithConflicts"] = await st.run(pulls.conflicting_files, st, repo, d)
    return web.json_response(out)


async def _action(request: web.Request) -> web.Response:
    st, who, repo = await _repo(request, "write")
    num, action = _num(request), request.match_info["action"]
    body = await json_body(request)
    body = body if isinstance(body, dict) else {}
    if action == "comment":
        text = str(body.get("comment") or "").strip()
        if not text:
            raise ValidationError("a comment needs text")
        e = await st.run(pulls.store(st).add_event, repo.id, num, "comment", who.id, pulls.comment_data(text, who.id))
        return web.json_response({"newMessage": event_json(num, e)})
    if action == "status":
        e = await st.run(pulls.set_status, st, who, repo, num, str(body.get("status")), str(body.get("comment") or ""))
        return web.json_response({"newStatus": event_json(num, e)})
    if action == "title":
        title = str(body.get("title") or "").strip()
        if not title:
            raise ValidationError("a title cannot be empty")
        d = await st.run(pulls.store(st).get, repo.id, num)
        e = await st.run(lambda: pulls.store(st).add_event(repo.id, num, "title-change", who.id,
                                                            {"from": d.title, "to": title}, title=title))
        return web.json_response({"newTitle": event_json(num, e)})
    oid = await st.run(pulls.merge, st, who, repo, num, str(body.get("comment") or ""))
    return web.json_response({"oid": oid})


def setup(app: web.Application) -> None:
    """Registered before ``routes.hub``, whose catch-all would otherwise take these paths."""
    base = r"/api/{kind:models|datasets|spaces}/{ns:[^/]+}/{name:[^/]+}/discussions"
    r = app.router
    r.add_get(base, _list)
    r.add_post(base, _create)
    r.add_get(base + r"/{num:[^/]+}", _details)
    r.add_post(base + r"/{num:[^/]+}/{action:comment|status|title|merge}", _action)
