"""Class 6, malformed input: no 5xx, and every answer is well-formed, whatever JSON, NDJSON, path or header
a caller sends. A Hypothesis property test throws generated JSON values and paths at every route of one
running server; fixed cases cover the shapes that used to crash (a list for an object, deep nesting,
``"size": "abc"`` and ``1e999``, ``[{"x":1}]`` to the batch route, a non-ASCII data-URL expiry, control
characters in a path)."""
from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xetfs.testing.cas import build_file, cas_token, upload
from xetfs.testing.hub import commit, lfs_file
from xetfs.testing.server import ServerHandle, running_server


class Target:
    def __init__(self, srv: ServerHandle, cas: str, file_hash: str, xorb: str) -> None:
        self.srv, self.cas, self.file_hash, self.xorb = srv, cas, file_hash, xorb

    def send(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
             token: str | None = "admin") -> tuple[int, dict[str, str], bytes]:
        """One raw request (the path is sent as given) -> (status, headers, body); never a 5xx, never a drop."""
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=30)
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {self.srv.token if token == 'admin' else token}"
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        out = resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        assert out[0] < 500, (method, path[:200], out[0], data[:300])
        if out[0] >= 400 and method != "HEAD":
            assert out[1].get("content-type", "").startswith("application/json"), (method, path[:200], out)
            assert isinstance(json.loads(data)["error"], str)
        return out


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with running_server(tmp_path_factory.mktemp("fuzz"), public_read=True) as srv:
        srv.create_repo("org/fuzz")
        f = build_file(seed=401)
        tok = cas_token(srv, "org/fuzz")
        assert upload(srv, f, tok) == (200, 200)
        assert commit(srv, "org/fuzz", [lfs_file("w.bin", f.sha256, len(f.data))])[0] == 200
        yield Target(srv, tok, str(f.file_hash), str(f.xorb.hash))


JSON_BODY_ROUTES = [("POST", "/api/repos/create"), ("DELETE", "/api/repos/delete"), ("POST", "/api/validate-yaml"),
                    ("POST", "/api/models/org/fuzz/paths-info/main"), ("POST", "/api/models/org/fuzz/preupload/main"),
                    ("POST", "/api/models/org/fuzz/branch/fz"), ("POST", "/v1/reconstructions"),
                    ("POST", "/v1/telemetry")]
CAS_BODY_ROUTES = [("POST", "/v1/reconstructions"), ("POST", "/v1/shards"), ("POST", "/v2/shards")]


def _exercise_body(t: Target, raw: bytes) -> None:
    for method, path in JSON_BODY_ROUTES:
        t.send(method, path, raw, {"Content-Type": "application/json"})
    for method, path in CAS_BODY_ROUTES:
        t.send(method, path, raw, {"Content-Type": "application/json"}, token=t.cas)
    header = json.dumps({"key": "header", "value": {"summary": "fuzz"}}).encode()
    for body in (raw, header + b"\n" + raw, header + b"\n" + json.dumps({"key": "lfsFile", "value": _loads(raw)}).encode(),
                 header + b"\n" + json.dumps({"key": "file", "value": _loads(raw)}).encode()):
        t.send("POST", "/api/models/org/fuzz/commit/main", body, {"Content-Type": "application/x-ndjson"})


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _exercise_path(t: Target, text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    seg = quote(raw, safe="")
    part = quote(raw, safe="/")
    for path in (f"/api/models/org/fuzz/tree/main/{part}", f"/api/models/org/{seg}", f"/api/models/{seg}/x",
                 f"/api/datasets/org/fuzz/revision/{seg}", f"/org/fuzz/resolve/{seg}/w.bin",
                 f"/org/fuzz/resolve/main/{part}", f"/{seg}/fuzz/resolve/main/w.bin", f"/v1/reconstructions/{seg}",
                 f"/v1/chunks/default/{seg}", f"/v1/chunks/{seg}/{t.xorb}", f"/api/models/org/fuzz/{seg}/main",
                 f"/api/models/org/fuzz/refs/{seg}", f"/v1/data/{t.xorb}?e={seg}&r={seg}&s={seg}",
                 f"/v1/data/{seg}?e=1&r=0-1&s=00", f"/{part}"):
        t.send("GET", path, token=None)
        t.send("GET", path)
    t.send("POST", f"/api/models/org/fuzz/branch/{seg}", b"{}", {"Content-Type": "application/json"})
    t.send("HEAD", f"/v1/xorbs/default/{seg}", token=t.cas)
    t.send("POST", f"/v1/xorbs/default/{seg}", b"x", token=t.cas)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70) | st.floats()
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["path", "size", "files", "paths", "hash", "name", "organization", "type", "private",
                         "key", "value", "oid", "sample", "content", "encoding", "startingPoint", "x"]) | st.text(
            max_size=10), children, max_size=6),
    max_leaves=20)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_generated_json_never_gives_a_5xx(target: Target, value: Any) -> None:
    _exercise_body(target, json.dumps(value, allow_nan=True).encode())


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(min_size=1, max_size=300))
def test_generated_paths_never_give_a_5xx(target: Target, text: str) -> None:
    _exercise_path(target, text)


@pytest.mark.parametrize("raw", [b"[]", b"[1,2]", b'"s"', b"17", b"null", b"[" * 100_000 + b"]" * 100_000,
                                 b'{"files": [{"path": "a", "size": "abc"}]}', b'{"files": [{"path": "a", "size": 1e999}]}',
                                 b'{"files": [1]}', b'{"paths": 5}', b'[{"x":1}]', b'[{"hash": 5}]', b"\xff\xfe",
                                 b'{"name": ["x"], "organization": 1}', b'{"startingPoint": {"a": 1}}'])
def test_known_crashing_shapes_are_4xx(target: Target, raw: bytes) -> None:
    _exercise_body(target, raw)


@pytest.mark.parametrize("text", ["a\nb", "a\x00b", "\x1b[2J", "é" * 3000, "..", "../../etc/passwd", "a\rX-Injected: 1",
                                  "9" * 5000, "²³", "%", "\udcff"])
def test_known_crashing_paths_are_4xx(target: Target, text: str) -> None:
    _exercise_path(target, text)


@pytest.mark.parametrize("rng", ["bytes=" + "9" * 5000 + "-", "bytes=0-" + "1" * 5000, "bytes=²-³", "bytes=0-1," * 300,
                                 "items=0-1", "bytes=--1", "bytes=5-1"])
def test_bad_range_headers_are_4xx(target: Target, rng: str) -> None:
    status, _, body = target.send("GET", "/api/models/org/fuzz/tree/main", token=None)
    for path in (f"/v1/reconstructions/{target.file_hash}", "/org/fuzz/resolve/main/w.bin"):
        target.send("GET", path, headers={"Range": rng}, token=target.cas if path.startswith("/v1") else "admin")
    obj = json.loads(target.send("GET", f"/v1/reconstructions/{target.file_hash}", token=target.cas)[2])
    url = next(iter(obj["fetch_info"].values()))[0]["url"].split(str(target.srv.port), 1)[1]
    target.send("GET", url, headers={"Range": rng}, token=None)
