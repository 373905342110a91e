"""AWS SigV4 against the example vectors of the AWS S3 documentation ("Signature Calculations for the
Authorization Header" and "Query String Authentication", bucket examplebucket, 2013-05-24, us-east-1)."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from xetfs.server.stores import sigv4

CREDS = sigv4.Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
NOW = datetime(2013, 5, 24, tzinfo=timezone.utc)
HOST = "https://examplebucket.s3.amazonaws.com"


def signature_of(authorization: str) -> str:
    return authorization.rsplit("Signature=", 1)[1]


@pytest.mark.parametrize(("method", "path", "headers", "body", "expected"), [
    ("GET", "/test.txt", {"Range": "bytes=0-9"}, b"",
     "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
    ("PUT", "/test%24file.text", {"Date": "Fri, 24 May 2013 00:00:00 GMT",
                                  "x-amz-storage-class": "REDUCED_REDUNDANCY"}, b"Welcome to Amazon S3.",
     "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"),
    ("GET", "/?lifecycle", {}, b"", "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
    ("GET", "/?max-keys=2&prefix=J", {}, b"", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
])
def test_header_signing_matches_aws_examples(method, path, headers, body, expected) -> None:
    out = sigv4.sign_headers(method, HOST + path, headers, CREDS, NOW, hashlib.sha256(body).hexdigest())
    assert signature_of(out["Authorization"]) == expected
    assert out["x-amz-date"] == "20130524T000000Z"
    assert out["Authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=")


def test_get_canonical_request_matches_aws_example() -> None:
    canonical, signed = sigv4.canonical_request(
        "GET", "/test.txt", [], {"Host": "examplebucket.s3.amazonaws.com", "Range": "bytes=0-9",
                                 "x-amz-content-sha256": sigv4.EMPTY_SHA256, "x-amz-date": "20130524T000000Z"},
        sigv4.EMPTY_SHA256)
    assert signed == "host;range;x-amz-content-sha256;x-amz-date"
    assert canonical == ("GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
                         f"x-amz-content-sha256:{sigv4.EMPTY_SHA256}\nx-amz-date:20130524T000000Z\n\n"
                         f"host;range;x-amz-content-sha256;x-amz-date\n{sigv4.EMPTY_SHA256}")


def test_presigned_url_matches_aws_example() -> None:
    url = sigv4.presign("GET", HOST + "/test.txt", CREDS, NOW, 86400)
    assert url == (HOST + "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                   "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
                   "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
                   "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")


def test_signature_depends_on_every_input() -> None:
    base = sigv4.presign("GET", HOST + "/a", CREDS, NOW, 60)
    variants = [
        sigv4.presign("GET", HOST + "/b", CREDS, NOW, 60),
        sigv4.presign("HEAD", HOST + "/a", CREDS, NOW, 60),
        sigv4.presign("GET", HOST + "/a", CREDS, NOW + timedelta(seconds=1), 60),
        sigv4.presign("GET", HOST + "/a", CREDS, NOW, 61),
        sigv4.presign("GET", HOST + "/a", sigv4.Credentials(CREDS.access_key, "other"), NOW, 60),
        sigv4.presign("GET", HOST + "/a", sigv4.Credentials(CREDS.access_key, CREDS.secret_key, "eu-west-1"), NOW, 60),
    ]
    sig = parse_qs(urlsplit(base).query)["X-Amz-Signature"]
    assert all(parse_qs(urlsplit(v).query)["X-Amz-Signature"] != sig for v in variants)


def test_session_token_is_signed_and_secret_never_printed() -> None:
    creds = sigv4.Credentials("AK", "SECRET", session_token="TOKEN")
    headers = sigv4.sign_headers("GET", HOST + "/k", {}, creds, NOW)
    assert headers["x-amz-security-token"] == "TOKEN" and "x-amz-security-token" in headers["Authorization"]
    query = parse_qs(urlsplit(sigv4.presign("GET", HOST + "/k", creds, NOW, 5)).query)
    assert query["X-Amz-Security-Token"] == ["TOKEN"]
    assert "SECRET" not in repr(creds)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        sigv4.presign("GET", HOST + "/k", CREDS, NOW, 0)
    with pytest.raises(ValueError):
        sigv4.presign("GET", HOST + "/k", CREDS, NOW, sigv4.MAX_PRESIGN_EXPIRES_S + 1)
    with pytest.raises(ValueError):
        sigv4.amz_date(datetime(2013, 5, 24))
    assert sigv4.uri_encode("a b/c~d$") == "a%20b%2Fc~d%24"
    assert sigv4.uri_encode("a b/c", keep_slash=True) == "a%20b/c"
