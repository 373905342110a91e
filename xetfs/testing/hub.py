"""Hub requests for tests of a running server (``ServerHandle``): commit bodies and commits, Xet tokens, Hub
tokens made with ``xetfs token create``, and a ``xetfs serve`` that must refuse its arguments.

- ``add_file(path, data)`` / ``lfs_file(path, sha256, size)`` / ``delete_file(path)``: commit operations;
  ``commit_body(ops, summary, parent=...)``: the NDJSON body; ``commit(srv, repo, ops, ...)``: POST it.
- ``xet_token(srv, repo, scope)`` -> (access token, expiry); ``cas_token(...)`` -> the access token, checking the
  ``X-Xet-Access-Token`` header agrees with the JSON.
- ``new_token(srv, scope, repo)``: a Hub token from the server's own data directory.
- ``serve_error(tmp_path, args, env)``: the one error line of a ``xetfs serve`` that exits 1 at start.
- ``uploaded_file(hub, repo, data, name)``: ``data`` uploaded as ``name`` -> (a CAS client that reads
  ``repo``, the file's Xet hash), for tests of the read path against a real server.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xetfs.client.cas import CasClient, TokenProvider
from xetfs.client.config import RepoRef
from xetfs.client.hub import HubClient
from xetfs.core.hashing import MerkleHash
from xetfs.testing.server import ServerHandle
from xetfs.write.upload import upload_files

JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}


def add_file(path: str, data: bytes) -> dict[str, Any]:
    """A regular (inline, base64) file of a commit."""
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"}}


def lfs_file(path: str, sha256: str, size: int) -> dict[str, Any]:
    """A file whose content was uploaded to CAS (named by its sha256)."""
    return {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": sha256, "size": size}}


def delete_file(path: str) -> dict[str, Any]:
    return {"key": "deletedFile", "value": {"path": path}}


def commit_body(ops: Sequence[Mapping[str, Any]], summary: str = "test", parent: str | None = None,
                description: str = "") -> bytes:
    """The NDJSON body of ``POST /api/{kind}/{repo}/commit/{rev}``: a header line, then one line per operation."""
    header: dict[str, Any] = {"summary": summary, "description": description}
    if parent is not None:
        header["parentCommit"] = parent
    return "\n".join(json.dumps(x) for x in [{"key": "header", "value": header}, *ops]).encode()


def commit(srv: ServerHandle, repo: str, ops: Sequence[Mapping[str, Any]], token: str | None = "admin",
           parent: str | None = None, rev: str = "main", kind: str = "models", summary: str = "test"
           ) -> tuple[int, dict[str, str], Any]:
    """POST a commit -> (status, headers, JSON answer)."""
    status, headers, data = srv.request("POST", f"/api/{kind}/{repo}/commit/{rev}",
                                        commit_body(ops, summary, parent), NDJSON, token=token)
    return status, headers, json.loads(data) if data else None


def xet_token(srv: ServerHandle, repo: str = "t/demo", scope: str = "read", rev: str = "main",
              hub_token: str | None = "admin", kind: str = "models") -> tuple[str, int]:
    """A Xet (CAS) access token from the token route -> (token, expiry in Unix seconds)."""
    status, headers, body = srv.request("GET", f"/api/{kind}/{repo}/xet-{scope}-token/{rev}", token=hub_token)
    assert status == 200, body
    obj = json.loads(body)
    assert headers["X-Xet-Access-Token"] == obj["accessToken"]
    return obj["accessToken"], int(obj["exp"])


def cas_token(srv: ServerHandle, repo: str = "t/demo", scope: str = "write", hub_token: str = "admin") -> str:
    return xet_token(srv, repo, scope, hub_token=hub_token)[0]


def new_token(srv: ServerHandle, scope: str, repo: str | None = None) -> str:
    """``xetfs token create`` on the server's data directory -> the new Hub token."""
    db = list(srv.cli_args[srv.cli_args.index("--db"):][:2]) if "--db" in srv.cli_args else ["--data", str(srv.data_dir)]
    cmd = [sys.executable, "-m", "xetfs.cli.main", "token", "create", *db, "--scope", scope]
    done = subprocess.run(cmd + (["--repo", repo] if repo else []), capture_output=True, text=True, check=True)
    return done.stdout.strip()


def serve_error(tmp_path: Path, args: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """Run ``xetfs serve ARGS`` (data under ``tmp_path/d``), which must exit 1 with one ``xetfs: error:`` line."""
    done = subprocess.run([sys.executable, "-m", "xetfs.cli.main", "serve", "--data", str(tmp_path / "d"),
                           "--port", "0", *args], env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xetfs: error: "), done.stderr
    return lines[0]


async def uploaded_file(hub: HubClient, repo: str, data: bytes, name: str) -> tuple[CasClient, MerkleHash]:
    """Upload ``data`` as ``name`` into ``repo`` (one commit, ``xetfs``'s uploader) -> (a CAS client with the
    repo's read tokens, sharing ``hub``'s HTTP client; the file's Xet hash)."""
    ref = RepoRef(repo)
    result = await upload_files(hub, ref, [(data, name)], f"add {name}")
    return CasClient(TokenProvider(lambda: hub.xet_token(ref, "read")), hub.http), result.files[name].file_hash
