"""Names clients choose: repo names, branch names, file paths (docs/security.md, "Names").

- Repo names follow the Hub: a namespace and a name, each 1-96 characters of ``[A-Za-z0-9._-]``, starting and
  ending with a letter or digit, without ``--`` or ``..``.
- Repo specs (``xetfs token create --repo``): ``NS/NAME`` (a model), ``models/NS/NAME``, ``datasets/NS/NAME``
  or ``spaces/NS/NAME``; canonical spelling: ``NS/NAME``, ``datasets/NS/NAME``, ``spaces/NS/NAME``.
- Branch names follow git's ref-name rules (``git check-ref-format --branch``), at most 255 bytes.
- File paths: the rules of ``protocol.paths`` (shared with clients, which skip other paths in a listing).
"""
from __future__ import annotations

import re

from xetfs.errors import ValidationError
from xetfs.protocol.paths import has_control, path_problem

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
MAX_BRANCH_BYTES = 255
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")


def valid_repo_part(part: str) -> bool:
    return bool(_NAME_RE.match(part)) and "--" not in part and ".." not in part


def check_repo_id(namespace: str, name: str) -> str:
    if not valid_repo_part(namespace) or not valid_repo_part(name):
        raise ValidationError(f"invalid repo name {namespace[:100]!r}/{name[:100]!r}: letters, digits, '-', '_', "
                              "'.', at most 96 characters, starting and ending with a letter or digit")
    return f"{namespace}/{name}"


def repo_spec(repo_type: str, repo_id: str) -> str:
    """The canonical spelling of a repo: ``ns/name``, ``datasets/ns/name`` or ``spaces/ns/name``."""
    return URL_PREFIX[repo_type] + repo_id


def parse_repo_spec(spec: str) -> str:
    """``[models/|datasets/|spaces/]NS/NAME`` -> its canonical spelling; ValidationError otherwise."""
    parts = spec.split("/")
    repo_type = "model"
    if len(parts) == 3 and parts[0] in REPO_TYPES:
        repo_type = REPO_TYPES[parts.pop(0)]
    if len(parts) != 2:
        raise ValidationError(f"invalid repo {spec[:100]!r}: want NS/NAME or datasets/NS/NAME or spaces/NS/NAME")
    return repo_spec(repo_type, check_repo_id(*parts))


def check_branch(name: str) -> str:
    """git's ref-name rules for a branch (``git check-ref-format --branch``)."""
    bad = (not name or len(name.encode("utf-8", "surrogatepass")) > MAX_BRANCH_BYTES or has_control(name)
           or any(c in name for c in " ~^:?*[\\") or name.startswith(("-", "/")) or name.endswith(("/", ".", ".lock"))
           or ".." in name or "//" in name or "@{" in name or name == "@"
           or any(seg.startswith(".") or seg.endswith(".lock") for seg in name.split("/")))
    if bad:
        raise ValidationError(f"invalid branch name {name[:100]!r} (git ref-name rules)")
    return name


def check_path(path: object) -> str:
    """``path`` when it follows the rules of ``protocol.paths``; ValidationError naming the rule otherwise."""
    problem = path_problem(path)
    if problem is not None:
        raise ValidationError(problem)
    assert isinstance(path, str)
    return path
