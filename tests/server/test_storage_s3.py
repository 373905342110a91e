"""S3Storage on a real SeaweedFS (``weed mini``): the storage conformance suite, presigned ranged reads,
create-only writes, a 70 MiB object, error translation, and a restart of the store. One SeaweedFS serves the
module; each test works under its own prefix."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from xetfs.transport.retry import RetryPolicy
from xetfs.errors import Forbidden, NotFound, TransientError, ValidationError
from xetfs.server.stores import sigv4
from xetfs.server.stores.s3 import S3Location, S3Storage, credentials_from_env
from xetfs.testing.server import check_storage_contract, make_bytes
from xetfs.testing.services import SeaweedFSHandle, free_port


@pytest.fixture
def store(weed: SeaweedFSHandle, request: pytest.FixtureRequest) -> Iterator[S3Storage]:
    creds = sigv4.Credentials(weed.access_key, weed.secret_key, weed.region)
    s = S3Storage(weed.storage_url(f"t/{request.node.name.replace('[', '-').rstrip(']')}"), endpoint=weed.endpoint,
                  credentials=creds)
    yield s
    s.close()


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_conformance_suite(store: S3Storage) -> None:
    check_storage_contract(store)


def test_objects_land_under_the_prefix(store: S3Storage, weed: SeaweedFSHandle) -> None:
    assert store.put_if_absent("xorbs/abc", b"payload")
    url = store.url_for("xorbs/abc")
    assert url == f"{weed.endpoint}/{weed.bucket}/t/test_objects_land_under_the_prefix/xorbs/abc"
    assert store.path_for("xorbs/abc") is None
    assert store.get_range("xorbs/abc", 7, 10) == b"", "a start past the end reads nothing, like a file"


def test_presigned_url_serves_byte_ranges(store: S3Storage) -> None:
    data = make_bytes("random", 300_000, seed=1)
    store.put_if_absent("xorbs/ranged", data)
    url = store.presign_get("xorbs/ranged", 600)
    resp = httpx.get(url, headers={"Range": "bytes=1000-66535"})
    assert resp.status_code == 206 and resp.content == data[1000:66536]
    assert resp.headers["content-range"] == f"bytes 1000-66535/{len(data)}"
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == data


def test_presigned_url_refuses_tampering_and_expiry(store: S3Storage) -> None:
    store.put_if_absent("xorbs/guarded", b"secret bytes")
    store.put_if_absent("xorbs/other", b"other bytes")
    url = store.presign_get("xorbs/guarded", 600)
    sig = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    tampered = with_query(url, **{"X-Amz-Signature": sig[:-1] + ("0" if sig[-1] != "0" else "1")})
    longer = with_query(url, **{"X-Amz-Expires": "601"})
    other_key = url.replace("xorbs/guarded", "xorbs/other")
    expired = store.presign_get("xorbs/guarded", 60, now=datetime.now(timezone.utc) - timedelta(hours=1))
    assert httpx.get(url).status_code == 200
    for bad in (tampered, longer, other_key, expired, store.url_for("xorbs/guarded")):
        resp = httpx.get(bad, headers={"Range": "bytes=0-3"})
        assert resp.status_code == 403, (bad, resp.status_code, resp.text)


def test_writes_are_create_only(store: S3Storage, weed: SeaweedFSHandle) -> None:
    assert store.put_if_absent("blobs/once", b"first") is True
    assert store.put_if_absent("blobs/once", b"second") is False
    assert store.get("blobs/once") == b"first"
    # The store itself refuses the overwrite (If-None-Match: * -> 412), not only our client.
    creds = sigv4.Credentials(weed.access_key, weed.secret_key, weed.region)
    url = store.url_for("blobs/once")
    headers = sigv4.sign_headers("PUT", url, {"if-none-match": "*"}, creds, datetime.now(timezone.utc),
                                 hashlib.sha256(b"third").hexdigest())
    assert httpx.put(url, headers=headers, content=b"third").status_code == 412
    assert store.get("blobs/once") == b"first"


def test_head_then_put_mode_for_stores_without_conditional_writes(store: S3Storage, weed: SeaweedFSHandle) -> None:
    plain = S3Storage(store.location, endpoint=weed.endpoint, credentials=store.credentials, conditional_put=False)
    try:
        assert plain.put_if_absent("blobs/plain", b"one") is True
        assert plain.put_if_absent("blobs/plain", b"two") is False
        assert plain.get("blobs/plain") == b"one"
    finally:
        plain.close()


def test_big_object_single_put(store: S3Storage) -> None:
    data = make_bytes("random", 70 * 1024 * 1024 + 123, seed=3)
    assert store.put_if_absent("xorbs/big", data) is True
    assert store.size("xorbs/big") == len(data)
    assert store.get_range("xorbs/big", len(data) - 4096, len(data) + 10) == data[-4096:]
    assert hashlib.sha256(store.get("xorbs/big")).digest() == hashlib.sha256(data).digest()
    url = store.presign_get("xorbs/big", 60)
    mid = 35 * 1024 * 1024
    resp = httpx.get(url, headers={"Range": f"bytes={mid}-{mid + 2 * 1024 * 1024 - 1}"})
    assert resp.status_code == 206 and resp.content == data[mid:mid + 2 * 1024 * 1024]


def test_errors_are_translated(store: S3Storage, weed: SeaweedFSHandle) -> None:
    with pytest.raises(NotFound):
        store.get("xorbs/missing")
    with pytest.raises(ValidationError):
        store.get_range("xorbs/missing", 5, 4)
    wrong = S3Storage(store.location, endpoint=weed.endpoint,
                      credentials=sigv4.Credentials(weed.access_key, "not-the-secret", weed.region))
    with pytest.raises(Forbidden):
        wrong.put_if_absent("blobs/x", b"x")
    wrong.close()
    nowhere = S3Storage(store.location, endpoint=f"http://127.0.0.1:{free_port()}", credentials=store.credentials,
                        retry=RetryPolicy(max_attempts=2, base_delay_s=0.01))
    with pytest.raises(TransientError):
        nowhere.exists("blobs/x")
    nowhere.close()


def test_location_and_environment() -> None:
    assert S3Location.parse("s3://my-bucket/a/b/") == S3Location("my-bucket", "a/b/")
    assert S3Location.parse("s3://my-bucket") == S3Location("my-bucket", "")
    for bad in ("http://b/x", "s3://B/x", "s3://b", "s3://my-bucket/../x", "s3://my-bucket/x?y=1"):
        with pytest.raises(ValidationError):
            S3Location.parse(bad)
    creds = credentials_from_env({"AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "sk"})
    assert (creds.access_key, creds.secret_key, creds.region, creds.session_token) == ("ak", "sk", "us-east-1", None)
    assert credentials_from_env({"AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "sk",
                                 "AWS_REGION": "eu-west-3"}).region == "eu-west-3"
    with pytest.raises(ValidationError):
        credentials_from_env({"AWS_ACCESS_KEY_ID": "ak"})
    s = S3Storage("s3://my-bucket/p", credentials=creds)
    assert s.endpoint == "https://s3.us-east-1.amazonaws.com"
    s.close()


def test_objects_survive_a_restart_of_the_store(store: S3Storage, weed: SeaweedFSHandle) -> None:
    store.put_if_absent("xorbs/durable", b"kept across restarts")
    endpoint = weed.endpoint
    weed.stop()
    weed.start()
    assert weed.endpoint == endpoint
    assert store.get("xorbs/durable") == b"kept across restarts"
    assert store.put_if_absent("xorbs/durable", b"x") is False
