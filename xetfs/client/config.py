"""Where the client connects and as whom: endpoint, token and repo spec resolution (docs/protocol.md, "Hub API").

Precedence, first non-empty wins:
- endpoint: ``--endpoint`` > ``XETFS_ENDPOINT`` > ``HF_ENDPOINT`` > ``http://127.0.0.1:8080``; several nodes of
  one store are given as ``URL1,URL2`` (``xetfs.transport.endpoints``: the client prefers the fastest healthy one and fails
  over when one dies);
- token:    ``--token``    > ``XETFS_TOKEN``    > ``HF_TOKEN``    > none (anonymous).

A repo spec is ``org/name`` (a model), or prefixed with the plural type as in Hub URLs
(``datasets/org/name``, ``models/org/name``, ``spaces/org/name``). ``--repo-type`` names the type
explicitly; naming two different types is an error. The revision is a branch name or a commit sha
(default ``main``) and is URL-encoded when placed in a path (branch names may contain ``/``).

Everything here is pure: environment mappings are passed in, so tests need not touch ``os.environ``.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import quote

from xetfs.errors import ValidationError

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
REPO_TYPES = ("model", "dataset", "space")
DEFAULT_REVISION = "main"


@dataclass(frozen=True, slots=True)
class RepoRef:
    """One repository at one revision. ``repo_id`` is ``namespace/name``."""

    repo_id: str
    repo_type: str = "model"
    revision: str = DEFAULT_REVISION

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repo_id.split("/", 1)[1]

    @property
    def api_path(self) -> str:
        """``/api/{type}s/{repo_id}``."""
        return f"/api/{self.repo_type}s/{self.repo_id}"

    @property
    def resolve_root(self) -> str:
        """``/{repo_id}`` for models, ``/{type}s/{repo_id}`` otherwise."""
        return f"/{self.repo_id}" if self.repo_type == "model" else f"/{self.repo_type}s/{self.repo_id}"

    def at(self, revision: str) -> "RepoRef":
        return replace(self, revision=revision)

    def __str__(self) -> str:
        prefix = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        return f"{prefix}{self.repo_id}@{self.revision}"


def quote_revision(revision: str) -> str:
    """A revision as one path segment: ``refs/pr/1`` -> ``refs%2Fpr%2F1``."""
    return quote(revision, safe="")


def quote_path(path: str) -> str:
    """A path in the repo, keeping its ``/`` separators."""
    return quote(path, safe="/")


def _first(*values: str | None) -> str | None:
    for v in values:
        if v:
            return v
    return None


def resolve_endpoint(cli_value: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """One endpoint URL, or several joined by commas (normalised: no spaces, no trailing ``/``)."""
    from xetfs.transport.endpoints import join_endpoints, parse_endpoints

    env = os.environ if env is None else env
    endpoint = _first(cli_value, env.get("XETFS_ENDPOINT"), env.get("HF_ENDPOINT")) or DEFAULT_ENDPOINT
    return join_endpoints(parse_endpoints(endpoint))


def resolve_token(cli_value: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return _first(cli_value, env.get("XETFS_TOKEN"), env.get("HF_TOKEN"))


def parse_repo(spec: str, repo_type: str | None = None, revision: str | None = None) -> RepoRef:
    """``org/name`` | ``datasets/org/name`` (| ``models/`` | ``spaces/``) -> RepoRef."""
    parts = spec.strip().strip("/").split("/")
    spec_type = None
    if len(parts) == 3 and parts[0].endswith("s") and parts[0][:-1] in REPO_TYPES:
        spec_type, parts = parts[0][:-1], parts[1:]
    if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
        raise ValidationError(f"repo must look like 'org/name' or 'datasets/org/name', got {spec!r}")
    if repo_type is not None and repo_type not in REPO_TYPES:
        raise ValidationError(f"repo type must be one of {', '.join(REPO_TYPES)}, got {repo_type!r}")
    if spec_type and repo_type and spec_type != repo_type:
        raise ValidationError(f"repo {spec!r} is a {spec_type} repo but --repo-type says {repo_type}")
    return RepoRef("/".join(parts), spec_type or repo_type or "model", revision or DEFAULT_REVISION)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every client command shares."""
    parser.add_argument("--endpoint", help="Hub endpoint URL, or several nodes of one store as URL1,URL2 "
                        f"(default: $XETFS_ENDPOINT, $HF_ENDPOINT, {DEFAULT_ENDPOINT})")
    parser.add_argument("--token", help="Hub token (default: $XETFS_TOKEN, $HF_TOKEN)")
    parser.add_argument("--repo-type", choices=REPO_TYPES, default=None,
                        help="repository type (default: model, or the prefix of REPO)")
    parser.add_argument("--revision", default=None, help="branch or commit sha (default: main)")
