"""Endpoint / token precedence and repo spec parsing (pure)."""
from __future__ import annotations

import pytest

from xetfs.client.config import DEFAULT_ENDPOINT, RepoRef, parse_repo, quote_revision, resolve_endpoint, resolve_token
from xetfs.errors import ValidationError


def test_endpoint_precedence() -> None:
    env = {"XETFS_ENDPOINT": "http://a:1", "HF_ENDPOINT": "http://b:2/"}
    assert resolve_endpoint("http://cli:3/", env) == "http://cli:3"
    assert resolve_endpoint(None, env) == "http://a:1"
    assert resolve_endpoint(None, {"HF_ENDPOINT": "http://b:2/"}) == "http://b:2"
    assert resolve_endpoint(None, {"XETFS_ENDPOINT": ""}) == DEFAULT_ENDPOINT
    with pytest.raises(ValidationError):
        resolve_endpoint("ftp://x", {})


def test_token_precedence() -> None:
    env = {"XETFS_TOKEN": "x", "HF_TOKEN": "h"}
    assert resolve_token("c", env) == "c"
    assert resolve_token(None, env) == "x"
    assert resolve_token(None, {"HF_TOKEN": "h"}) == "h"
    assert resolve_token(None, {}) is None


@pytest.mark.parametrize("spec,repo_type,expected", [
    ("org/name", None, RepoRef("org/name", "model")),
    ("datasets/org/name", None, RepoRef("org/name", "dataset")),
    ("models/org/name", None, RepoRef("org/name", "model")),
    ("org/name", "dataset", RepoRef("org/name", "dataset")),
    ("datasets/org/name", "dataset", RepoRef("org/name", "dataset")),
    ("/spaces/org/name/", None, RepoRef("org/name", "space")),
])
def test_parse_repo(spec: str, repo_type: str | None, expected: RepoRef) -> None:
    assert parse_repo(spec, repo_type) == expected


@pytest.mark.parametrize("spec,repo_type", [("name", None), ("a/b/c", None), ("datasets/org/name", "model"),
                                            ("org/name", "bucket"), ("org/..", None), ("org/", None)])
def test_parse_repo_rejects(spec: str, repo_type: str | None) -> None:
    with pytest.raises(ValidationError):
        parse_repo(spec, repo_type)


def test_paths() -> None:
    ds = parse_repo("datasets/org/name", revision="refs/pr/1")
    assert ds.api_path == "/api/datasets/org/name"
    assert ds.resolve_root == "/datasets/org/name"
    assert parse_repo("org/name").resolve_root == "/org/name"
    assert quote_revision(ds.revision) == "refs%2Fpr%2F1"
    assert str(ds) == "datasets/org/name@refs/pr/1"
