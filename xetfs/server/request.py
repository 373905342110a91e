"""Request parsing the route modules share: bodies under a limit, JSON bodies, hash parameters, callers.

Route modules never import each other; what more than one of them needs lives here.
"""
from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from xetfs.core.hashing import MerkleHash
from xetfs.errors import ValidationError
from xetfs.server.auth import Principal
from xetfs.server.context import state_of
from xetfs.server.errors import RepoNotFound
from xetfs.server.metadata.store import Repo
from xetfs.server.names import repo_spec
from xetfs.server.services.repos import lookup_repo

_LONG_NUMBER = re.compile(r"[0-9]{19,}")


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise ValidationError(f"body of {request.content_length} bytes exceeds {limit}")
    buf = bytearray()
    while chunk := await request.content.readany():
        buf += chunk
        if len(buf) > limit:
            raise ValidationError(f"body exceeds {limit} bytes")
    return bytes(buf)


async def json_body(request: web.Request, limit: int = 16 << 20, empty: bytes = b"{}") -> Any:
    try:
        return json.loads(await read_body(request, limit) or empty)
    except (ValueError, RecursionError):
        raise ValidationError("request body is not JSON (or nested too deeply)") from None


async def json_object(request: web.Request, limit: int = 16 << 20) -> dict[str, Any]:
    body = await json_body(request, limit)
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    return body


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
    404 as a missing one (``--public-read`` never reveals private repos)."""
    st = state_of(request)
    who = await principal(request, scope, repo_spec(repo_type, repo_id))
    repo = await st.run(lookup_repo, st, repo_type, repo_id)
    if repo.private and who.anonymous:
        raise RepoNotFound(f"{repo_type} repository {repo_id} not found")
    return who, repo
