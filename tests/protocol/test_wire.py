"""Hub and CAS wire shapes built and parsed without I/O (docs/protocol.md): the NDJSON commit body both ways,
tree entries, preupload, tokens, CAS upload answers, the shard event stream, byte ranges."""
from __future__ import annotations

import base64
import json

import pytest

from xetfs.core.hashing import MerkleHash
from xetfs.errors import RemoteError, TransientError, ValidationError
from xetfs.protocol.cas import (check_content_range, parse_shard_events, parse_shard_upload_answer_v1,
                                parse_xorb_upload_answer, range_header)
from xetfs.protocol.hub import (AddRegular, AddXet, CommitHeader, CommitInfo, Delete, PreuploadAnswer, PreuploadFile,
                                XetToken, commit_ndjson, parse_branches, parse_commit_answer, parse_commit_ndjson,
                                parse_preupload_answer, parse_tree_entry, parse_xet_token, preupload_body)

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


def test_shard_event_stream() -> None:
    assert parse_shard_events(b'{"type":"validating","verified":1,"total":2}\n{"type":"result"}')
    assert not parse_shard_events(b'{"type":"result","result":0}\n')
    with pytest.raises(RemoteError, match="bad"):
        parse_shard_events(b'{"type":"error","message":"bad","retryable":false}\n')
    with pytest.raises(TransientError):
        parse_shard_events(b'{"type":"error","message":"busy","retryable":true}\n')
    with pytest.raises(TransientError):
        parse_shard_events(b'{"type":"validating"}\n')


def test_commit_body_round_trips_through_the_request_parser() -> None:
    ops = [AddRegular("README.md", b"hi\n"), AddXet("w/model.bin", SHA, 10_000_000), Delete("old.txt"),
           Delete("olddir", is_folder=True)]
    header, parsed = parse_commit_ndjson(commit_ndjson(ops, "add model", "long text", parent_commit="c" * 40))
    assert header == CommitHeader("add model", "long text", "c" * 40)
    assert parsed == ops
    assert parse_commit_ndjson(b'{"key":"header","value":{"summary":"s"}}\n\n') == (CommitHeader("s"), [])


@pytest.mark.parametrize("body,message", [
    (b"", "starts with a header"),
    (b'{"key":"file","value":{"path":"a","content":""}}\n', "starts with a header"),
    (b'{"key":"header","value":{}}\nnot json\n', "line 2 is not JSON"),
    (b'{"key":"header","value":{}}\n{"key":"file","value":[]}\n', "line 2: expected"),
    (b'{"key":"header","value":{}}\n{"key":"file","value":{"path":"a","content":"%%"}}\n', "not valid base64"),
    (b'{"key":"header","value":{}}\n{"key":"lfsFile","value":{"path":"a","oid":"ab"}}\n', "64-hex oid"),
    (b'{"key":"header","value":{}}\n{"key":"lfsFile","value":{"path":"a","oid":"' + b"a" * 64 + b'","size":-1}}\n',
     "non-negative"),
    (b'{"key":"header","value":{}}\n{"key":"rename","value":{"path":"a"}}\n', "unsupported commit operation"),
    (b'{"key":"header","value":{}}\n{"key":"deletedFile","value":{}}\n', "without a path"),
])
def test_commit_request_parser_refuses_bad_lines(body: bytes, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_commit_ndjson(body)


def test_preupload_body_and_answer() -> None:
    body = preupload_body([PreuploadFile("a.bin", 2000, b"x" * 2000)])
    assert body == {"files": [{"path": "a.bin", "sample": base64.b64encode(b"x" * 512).decode(), "size": 2000}]}
    answer = parse_preupload_answer({"files": [{"path": "a.bin", "uploadMode": "lfs"},
                                               {"path": "r.txt", "uploadMode": "regular", "shouldIgnore": True,
                                                "oid": "d" * 40}]}, "preupload")
    assert answer == {"a.bin": PreuploadAnswer("lfs"), "r.txt": PreuploadAnswer("regular", True, "d" * 40)}
    for bad in ({}, {"files": [{"path": "a", "uploadMode": "git"}]}, {"files": [{"uploadMode": "lfs"}]}):
        with pytest.raises(RemoteError):
            parse_preupload_answer(bad, "preupload")


def test_xet_token_from_body_or_headers() -> None:
    assert parse_xet_token({"casUrl": "http://cas/", "accessToken": "t", "exp": 5}, {}, "token") == \
        XetToken("http://cas", "t", 5.0)
    assert parse_xet_token(None, {"x-xet-cas-url": "http://c", "x-xet-access-token": "u",
                                  "x-xet-token-expiration": "7"}, "token") == XetToken("http://c", "u", 7.0)
    for bad in ({"casUrl": "http://c", "accessToken": "t"}, {"casUrl": "http://c", "accessToken": "t", "exp": "x"}):
        with pytest.raises(RemoteError):
            parse_xet_token(bad, {}, "token")


def test_commit_answer_and_branches() -> None:
    assert parse_commit_answer({"commitOid": "e" * 40, "commitUrl": "u"}, "commit") == CommitInfo("e" * 40, "u")
    with pytest.raises(RemoteError):
        parse_commit_answer({"commitUrl": "u"}, "commit")
    assert parse_branches({"branches": [{"name": "main", "targetCommit": "f" * 40}, {"x": 1}]}, "refs") == {
        "main": "f" * 40}


def test_cas_answers_and_ranges() -> None:
    assert range_header(10, 20) == {"Range": "bytes=10-19"}
    check_content_range("bytes 10-19/100", 10, 19, "fetch")
    check_content_range(None, 10, 19, "fetch")
    for bad in ("bytes 10-18/100", "items 10-19/100"):
        with pytest.raises(RemoteError, match="Content-Range"):
            check_content_range(bad, 10, 19, "fetch")
    assert parse_xorb_upload_answer({"was_inserted": False}) is False
    assert parse_shard_upload_answer_v1({"result": 1}) is True
    with pytest.raises(RemoteError):
        parse_xorb_upload_answer({"was_inserted": 1})
    with pytest.raises(RemoteError):
        parse_shard_upload_answer_v1({"result": 2})
