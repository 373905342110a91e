"""Tokens and scopes (docs/security.md).

Three kinds of credentials, all derived from one server secret: kept in ``DIR/secret`` (mode 0600) with the
embedded SQLite metadata; kept in the database (``settings``: ``server_secret``, created by the first node
that starts) when the metadata database is shared (``--db postgresql://…``), so every node of a cluster
signs and accepts the same CAS tokens and data URLs:

- **Hub tokens** (``Authorization: Bearer xetfs_…``): random secrets; SQLite stores only their sha256.
  Each has a scope (``read`` or ``write``; write implies read) and optionally one repo it is limited to
  (``ns/name`` = a model, ``datasets/ns/name``, ``spaces/ns/name``: the type counts). The admin token (``DIR/admin_token`` or ``--token``) is global write. With a shared database
  the first node's admin token becomes the cluster's (its sha256 in ``settings``: ``admin_token_sha256``)
  and every node accepts it, besides its own; give every node the same ``--token`` to have just one.
- **CAS tokens** (what ``/xet-{read,write}-token`` hands to hf_xet): stateless,
  ``xcas.<base64url JSON claims>.<base64url HMAC-SHA256>``, bound to repo + revision + scope + exp and to the repo's row id (a repo deleted and created again under
  the same name is another repo: older tokens do not reach it). The CAS
  accepts one until its ``exp`` (hf_xet never refreshes after a 401).
- **Data URLs** (reconstruction fetch URLs): ``/v1/data/<xorb>?e=<exp>&r=<a-b,c-d>&s=<sig>`` with
  ``sig = HMAC-SHA256(url key, "<xorb hex>:<exp>:<ranges>")``: signed for exactly the byte ranges of the
  terms they were issued for. hf_xet sends no Authorization there, so the URL itself is the credential; a
  tampered or expired one is 403, and it serves no byte outside its ranges (``routes.data``).

401 = no or bad credentials; 403 = valid but insufficient scope (read token on a write route, another repo).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xetfs.errors import Forbidden, Unauthorized
from xetfs.server.metadata.store import Metadata
from xetfs.server.names import parse_repo_spec
from xetfs.osutil.atomic import write_atomic

log = logging.getLogger(__name__)

SCOPES = ("read", "write")
ANONYMOUS = "anonymous"
CAS_TOKEN_TTL_S = 3600
DATA_URL_TTL_S = 3600
_CAS_PREFIX = "xcas"
MAX_SIGNED_RANGES = 16              # byte ranges one data URL is signed for
_DIGITS_RE = re.compile(r"^[0-9]{1,12}$")
_RANGES_RE = re.compile(r"^[0-9]{1,12}-[0-9]{1,12}(,[0-9]{1,12}-[0-9]{1,12}){0,%d}$" % (MAX_SIGNED_RANGES - 1))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token id (``admin``, a DB token id, or ``anonymous``), its scope and repo limit."""

    id: str
    scope: str
    repo: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.id == ANONYMOUS

    def can(self, scope: str, repo: str | None = None) -> bool:
        """May this caller use ``scope`` on ``repo`` (``names.repo_spec``: ``ns/name``, ``datasets/ns/name``…)?"""
        if scope == "write" and self.scope != "write":
            return False
        return self.repo is None or repo is None or self.repo == repo


@dataclass(frozen=True, slots=True)
class CasClaims:
    sub: str
    repo: str           # "{type}:{ns}/{name}" (services.repos.repo_key); "" for an anonymous caller
    rev: str
    scope: str
    exp: int
    rid: int = 0        # the repo's row id when the token was issued: a token dies with its repo


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "xetfs_" + secrets.token_urlsafe(32)


def load_secret(data_dir: Path, meta: Metadata | None = None) -> bytes:
    """The server secret: from the shared metadata database (get-or-create), else ``DIR/secret``."""
    if meta is not None and meta.shared:
        return bytes.fromhex(meta.setting("server_secret", secrets.token_hex(32)) or "")
    path = data_dir / "secret"
    if not path.exists():
        write_atomic(path, secrets.token_hex(32).encode(), 0o600)
    return bytes.fromhex(path.read_text().strip())


def create_hub_token(meta: Metadata, scope: str, repo: str | None) -> tuple[str, str]:
    """A new Hub token -> (token id, token), limited to ``repo`` (``[datasets/|spaces/]NS/NAME``, checked)
    when given. Only the hash is stored."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    spec = parse_repo_spec(repo) if repo is not None else None
    token, token_id = new_token(), secrets.token_hex(4)
    meta.add_token(token_id, hash_token(token), scope, spec)
    return token_id, token


class Auth:
    def __init__(self, data_dir: Path, meta: Metadata, admin_token: str, public_read: bool = False) -> None:
        secret = load_secret(data_dir, meta)
        self._cas_key = hmac.new(secret, b"xetfs cas token", hashlib.sha256).digest()
        self._url_key = hmac.new(secret, b"xetfs data url", hashlib.sha256).digest()
        self._admin_hashes = [hash_token(admin_token)]
        if meta.shared:
            cluster = meta.setting("admin_token_sha256", self._admin_hashes[0]) or ""
            if cluster != self._admin_hashes[0]:
                log.info("this node's admin token is not the cluster's: both are accepted here, "
                         "the cluster's on every node")
                self._admin_hashes.append(cluster)
        self._meta = meta
        self.public_read = public_read

    # ------------------------------------------------------------------ Hub tokens
    def hub_principal(self, authorization: str | None) -> Principal | None:
        """The caller of a Hub route; None = anonymous. Raises Unauthorized for a bad token. (Sync: DB.)"""
        token = _bearer(authorization)
        if token is None:
            return None
        h = hash_token(token)
        if any(hmac.compare_digest(h, admin) for admin in self._admin_hashes):
            return Principal("admin", "write")
        rec = self._meta.token(h)
        if rec is None:
            raise Unauthorized("invalid token")
        return Principal(rec.id, rec.scope, rec.repo)

    def require(self, who: Principal | None, scope: str, repo: str | None = None) -> Principal:
        if who is None:
            if scope == "read" and self.public_read:
                return Principal(ANONYMOUS, "read")
            raise Unauthorized("a token is required")
        if not who.can(scope, repo):
            raise Forbidden(f"token {who.id} has no {scope} access" + (f" to {repo}" if repo else ""))
        return who

    # ------------------------------------------------------------------ CAS tokens
    def issue_cas_token(self, who: Principal, repo: str, rev: str, scope: str,
                        ttl_s: int = CAS_TOKEN_TTL_S) -> tuple[str, int]:
        """A CAS token for ``repo`` (``"{type}:{ns}/{name}"``), bound to the repo's current row id. (Sync: DB.)"""
        exp = int(time.time()) + ttl_s
        current = self._meta.repo_by_key(repo)
        claims = {"sub": who.id, "repo": repo, "rev": rev, "scope": scope, "exp": exp,
                  "rid": current.id if current is not None else 0}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        mac = _b64(hmac.new(self._cas_key, payload.encode(), hashlib.sha256).digest())
        return f"{_CAS_PREFIX}.{payload}.{mac}", exp

    def cas_claims(self, authorization: str | None, scope: str) -> CasClaims:
        """Check a CAS request's bearer token: 401 missing/bad/expired, 403 read token on a write route."""
        token = _bearer(authorization)
        if token is None:
            if scope == "read" and self.public_read:
                return CasClaims(ANONYMOUS, "", "", "read", 0)
            raise Unauthorized("a xet token is required")
        claims = self._decode_cas(token)
        if claims.exp < time.time():
            raise Unauthorized("xet token expired")
        if scope == "write" and claims.scope != "write":
            raise Forbidden("this xet token is read-only")
        return claims

    def _decode_cas(self, token: str) -> CasClaims:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _CAS_PREFIX:
            raise Unauthorized("invalid xet token")
        want = hmac.new(self._cas_key, parts[1].encode(), hashlib.sha256).digest()
        try:
            ok = hmac.compare_digest(want, _unb64(parts[2]))
            obj: Any = json.loads(_unb64(parts[1])) if ok else None   # None -> TypeError below -> Unauthorized
            return CasClaims(str(obj["sub"]), str(obj["repo"]), str(obj["rev"]), str(obj["scope"]), int(obj["exp"]),
                             int(obj["rid"]))
        except (ValueError, TypeError, KeyError):
            raise Unauthorized("invalid xet token") from None

    # ------------------------------------------------------------------ data URLs
    def sign_data(self, xorb_hex: str, exp: int, ranges: str) -> str:
        return hmac.new(self._url_key, f"{xorb_hex}:{exp}:{ranges}".encode(), hashlib.sha256).hexdigest()

    def data_query(self, xorb_hex: str, ranges: Sequence[tuple[int, int]], ttl_s: int = DATA_URL_TTL_S) -> str:
        """The query of a data URL for the byte ranges ``ranges`` (inclusive ends) of one xorb."""
        exp = int(time.time()) + ttl_s
        text = ",".join(f"{a}-{b}" for a, b in ranges)
        return f"e={exp}&r={text}&s={self.sign_data(xorb_hex, exp, text)}"

    def check_data(self, xorb_hex: str, exp: str | None, ranges: str | None,
                   sig: str | None) -> list[tuple[int, int]]:
        """A data URL's signed byte ranges (inclusive ends); 403 when unsigned, tampered or expired."""
        if not exp or not sig or not ranges or not _DIGITS_RE.match(exp) or not _RANGES_RE.match(ranges):
            raise Forbidden("unsigned data URL")
        if not hmac.compare_digest(self.sign_data(xorb_hex, int(exp), ranges), sig):
            raise Forbidden("bad data URL signature")
        if int(exp) < time.time():
            raise Forbidden("data URL expired")
        return [(int(a), int(b)) for a, _, b in (part.partition("-") for part in ranges.split(","))]


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    return token.strip()
