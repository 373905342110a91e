"""Hub wire formats built and parsed without I/O: the NDJSON commit body, tree entries, shard events."""
from __future__ import annotations

import base64
import json

import httpx
import pytest

from xetfs.client.cas import _parse_shard_events
from xetfs.core.hashing import MerkleHash
from xetfs.errors import RemoteError, TransientError
from xetfs.client.hub import AddRegular, AddXet, Delete, commit_ndjson, parse_tree_entry

SHA = "a" * 64


def test_commit_body_lines() -> None:
    body = commit_ndjson([AddRegular("README.md", b"hi\n"), AddXet("w/model.bin", SHA, 10_000_000),
                          Delete("old.txt"), Delete("olddir", is_folder=True)],
                         "add model", "long text", parent_commit="c" * 40)
    assert body.endswith(b"\n")
    lines = [json.loads(line) for line in body.splitlines()]
    assert lines == [
        {"key": "header", "value": {"summary": "add model", "description": "long text", "parentCommit": "c" * 40}},
        {"key": "file", "value": {"content": base64.b64encode(b"hi\n").decode(), "path": "README.md",
                                  "encoding": "base64"}},
        {"key": "lfsFile", "value": {"path": "w/model.bin", "algo": "sha256", "oid": SHA, "size": 10_000_000}},
        {"key": "deletedFile", "value": {"path": "old.txt"}},
        {"key": "deletedFolder", "value": {"path": "olddir"}},
    ]


def test_commit_header_without_parent() -> None:
    (header,) = [json.loads(line) for line in commit_ndjson([], "s").splitlines()]
    assert header == {"key": "header", "value": {"summary": "s", "description": ""}}


def test_tree_entries() -> None:
    xet = MerkleHash(bytes(range(32)))
    entry = parse_tree_entry({"type": "file", "oid": "b" * 40, "size": 5, "path": "w.bin",
                              "lfs": {"oid": SHA, "size": 5, "pointerSize": 131}, "xetHash": str(xet)})
    assert (entry.path, entry.size, entry.xet_hash, entry.sha256, entry.is_file) == ("w.bin", 5, xet, SHA, True)
    folder = parse_tree_entry({"type": "directory", "oid": "c" * 40, "size": 0, "path": "d"})
    assert not folder.is_file and folder.xet_hash is None and folder.sha256 is None
    with pytest.raises(RemoteError):
        parse_tree_entry({"type": "file"})


def _resp(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body)


def test_shard_event_stream() -> None:
    assert _parse_shard_events(_resp(b'{"type":"validating","verified":1,"total":2}\n{"type":"result"}'))
    assert not _parse_shard_events(_resp(b'{"type":"result","result":0}\n'))
    with pytest.raises(RemoteError, match="bad"):
        _parse_shard_events(_resp(b'{"type":"error","message":"bad","retryable":false}\n'))
    with pytest.raises(TransientError):
        _parse_shard_events(_resp(b'{"type":"error","message":"busy","retryable":true}\n'))
    with pytest.raises(TransientError):
        _parse_shard_events(_resp(b'{"type":"validating"}\n'))
