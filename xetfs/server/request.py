"""Request parsing the route modules share: bodies under a limit, JSON bodies, hash parameters, callers.

Route modules never import each other; what more than one of them needs lives here.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import replace
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from xetfs.core.hashing import MerkleHash
from xetfs.errors import ValidationError
from xetfs.server.auth import Principal
from xetfs.server.context import State, state_of
from xetfs.server.errors import RepoNotFound, RequestTimeout, TooManyUploads
from xetfs.server.metadata.store import Repo
from xetfs.server.names import repo_spec
from xetfs.server.services.repos import lookup_repo

_LONG_NUMBER = re.compile(r"[0-9]{19,}")
BODY_IDLE_TIMEOUT_S = 30.0
JSON_BODY_BYTES = 4 << 20            # paths-info, preupload: batches of paths
SMALL_JSON_BYTES = 64 << 10          # create/delete repo, branch
MAX_UPLOADS_PER_TOKEN = 8


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (400 beyond, from ``Content-Length`` before any byte is read); 408 when the client sends nothing for
    ``BODY_IDLE_TIMEOUT_S``. Call it only after the caller is authenticated."""
    if request.content_length is not None and request.content_length > limit:
        raise ValidationError(f"body of {request.content_length} bytes exceeds {limit}")
    parts: list[bytes] = []    # joined once at the end: one copy of the body, not a growing buffer plus a copy
    size = 0
    while True:
        try:
            async with asyncio.timeout(BODY_IDLE_TIMEOUT_S):
                chunk = await request.content.readany()
        except TimeoutError:
            raise RequestTimeout(f"no body bytes for {BODY_IDLE_TIMEOUT_S:g} s") from None
        if not chunk:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ValidationError(f"body exceeds {limit} bytes")


@contextlib.contextmanager
def upload_slot(request: web.Request, who: str) -> Iterator[None]:
    """One of the ``MAX_UPLOADS_PER_TOKEN`` concurrent uploads of the token ``who`` (429 beyond)."""
    uploads = state_of(request).uploads
    if uploads.get(who, 0) >= MAX_UPLOADS_PER_TOKEN:
        raise TooManyUploads(f"at most {MAX_UPLOADS_PER_TOKEN} uploads in flight per token")
    uploads[who] = uploads.get(who, 0) + 1
    try:
        yield
    finally:
        uploads[who] -= 1
        if not uploads[who]:
            del uploads[who]


async def json_body(request: web.Request, limit: int = JSON_BODY_BYTES, empty: bytes = b"{}") -> Any:
    try:
        return json.loads(await read_body(request, limit) or empty)
    except (ValueError, RecursionError):
        raise ValidationError("request body is not JSON (or nested too deeply)") from None


async def json_object(request: web.Request, limit: int = JSON_BODY_BYTES) -> dict[str, Any]:
    body = await json_body(request, limit)
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    return body


def _names_repo(st: State, spec: str, repo: Repo) -> bool:
    """Does the repo name ``spec`` (``names.repo_spec`` spelling) lead to ``repo`` (its name, or an old one)?"""
    prefix = next((p for p in ("datasets/", "spaces/") if spec.startswith(p)), "")
    repo_type = {"": "model", "datasets/": "dataset", "spaces/": "space"}[prefix]
    found = st.meta.repo(repo_type, spec[len(prefix):])
    return found is not None and found.id == repo.id


def range_header(request: web.Request) -> str | None:
    """The ``Range`` header, refused (400) unless it is short ASCII with numbers of at most 18 digits."""
    value = request.headers.get("Range")
    if value is not None and (len(value) > 4096 or not value.isascii() or _LONG_NUMBER.search(value)):
        raise ValidationError("unsupported Range header")
    return value


def hash_param(request: web.Request, name: str) -> MerkleHash:
    return MerkleHash.from_hex(request.match_info[name])


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def principal(request: web.Request, scope: str, repo: str | None) -> Principal:
    """The Hub caller, checked for ``scope`` on ``repo`` (``names.repo_spec``; 401 without a usable token,
    403 out of scope)."""
    st = state_of(request)
    who = await st.run(st.auth.hub_principal, request.headers.get("Authorization"))
    return st.auth.require(who, scope, repo)


async def repo_access(request: web.Request, scope: str, repo_type: str, repo_id: str) -> tuple[Principal, Repo]:
    """The caller and the repo, checked for ``scope``. A private repo is, for an anonymous caller, the same
    404 as a missing one (``--public-read`` never reveals private repos). A missing repo is 404 only to a
    caller whose scope covers the name asked for."""
    st = state_of(request)
    asked = repo_spec(repo_type, repo_id)
    caller = await st.run(st.auth.hub_principal, request.headers.get("Authorization"))
    try:
        repo = await st.run(lookup_repo, st, repo_type, repo_id)
    except RepoNotFound:
        st.auth.require(caller, scope, asked)           # out of scope: 401/403 whether or not the repo exists
        raise
    # A moved repo answers to its old names, and a token limited to it follows it: the token's name may be the
    # repo's name now, or any name that leads to it.
    if caller is not None and caller.repo not in (None, asked) and await st.run(_names_repo, st, caller.repo, repo):
        caller = replace(caller, repo=asked)
    who = st.auth.require(caller, scope, asked)
    if repo.private and who.anonymous:
        raise RepoNotFound(f"{repo_type} repository {repo_id} not found")
    return who, repo
