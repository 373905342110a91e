"""AWS Signature Version 4 for S3 requests: signed headers and presigned URLs. Pure: no clock, no I/O.

The algorithm (AWS "Signature Version 4 signing process", S3 flavour):

1. canonical request = METHOD \\n canonical URI \\n canonical query \\n canonical headers \\n
   signed header names \\n payload hash. S3 encodes each path segment once (RFC 3986 unreserved characters
   ``A-Za-z0-9-._~`` stay, everything else is ``%XX``; ``/`` separates segments and is kept); the query is
   sorted by encoded name then value; header names are lower-cased, values trimmed, sorted by name.
2. string to sign = ``AWS4-HMAC-SHA256`` \\n timestamp \\n scope (``date/region/service/aws4_request``) \\n
   hex sha256 of the canonical request.
3. signing key = HMAC chain ``"AWS4"+secret`` -> date -> region -> service -> ``aws4_request``;
   signature = hex HMAC(signing key, string to sign).

Header signing puts the result in ``Authorization``; presigning puts the credential, date, expiry, signed
header names and signature in the query (``X-Amz-*``) with payload hash ``UNSIGNED-PAYLOAD``. A presigned
GET signs only ``host``, so the holder may add any other header, notably ``Range`` (direct reads of byte
ranges straight from the object store). The caller passes ``now`` (UTC), which keeps this module pure and
lets tests pin the AWS documented example vectors.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit, urlunsplit, parse_qsl

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600   # the S3 limit for X-Amz-Expires


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    service: str = "s3"
    session_token: str | None = None

    def __repr__(self) -> str:       # never print the secret
        return f"Credentials(access_key={self.access_key!r}, region={self.region!r}, service={self.service!r})"


def uri_encode(text: str, *, keep_slash: bool = False) -> str:
    """RFC 3986 percent-encoding as S3 wants it (``~`` kept, space as ``%20``)."""
    return quote(text, safe="-_.~" + ("/" if keep_slash else ""))


def amz_date(now: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` in UTC."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    encoded = sorted((uri_encode(k), uri_encode(v)) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_request(method: str, path: str, query: Iterable[tuple[str, str]], headers: Mapping[str, str],
                      payload_sha256: str) -> tuple[str, str]:
    """-> (canonical request text, signed header names). ``path`` is already URI-encoded (as sent)."""
    canon = {k.lower().strip(): " ".join(str(v).split()) for k, v in headers.items()}
    names = sorted(canon)
    signed = ";".join(names)
    header_block = "".join(f"{n}:{canon[n]}\n" for n in names)
    text = "\n".join([method.upper(), path or "/", canonical_query(query), header_block, signed, payload_sha256])
    return text, signed


def scope(creds: Credentials, timestamp: str) -> str:
    return f"{timestamp[:8]}/{creds.region}/{creds.service}/aws4_request"


def signing_key(creds: Credentials, date: str) -> bytes:
    key = _hmac(("AWS4" + creds.secret_key).encode(), date)
    for part in (creds.region, creds.service, "aws4_request"):
        key = _hmac(key, part)
    return key


def signature(creds: Credentials, timestamp: str, canonical: str) -> str:
    to_sign = "\n".join([ALGORITHM, timestamp, scope(creds, timestamp),
                         hashlib.sha256(canonical.encode()).hexdigest()])
    return hmac.new(signing_key(creds, timestamp[:8]), to_sign.encode(), hashlib.sha256).hexdigest()


def sign_headers(method: str, url: str, headers: Mapping[str, str], creds: Credentials, now: datetime,
                 payload_sha256: str = EMPTY_SHA256) -> dict[str, str]:
    """The headers to send: ``headers`` plus host, x-amz-date, x-amz-content-sha256 (and the session token)
    and ``Authorization``. Every header passed in is signed."""
    parts = urlsplit(url)
    timestamp = amz_date(now)
    out = dict(headers)
    out.update({"host": parts.netloc, "x-amz-date": timestamp, "x-amz-content-sha256": payload_sha256})
    if creds.session_token:
        out["x-amz-security-token"] = creds.session_token
    canonical, signed = canonical_request(method, parts.path, parse_qsl(parts.query, keep_blank_values=True),
                                          out, payload_sha256)
    out["Authorization"] = (f"{ALGORITHM} Credential={creds.access_key}/{scope(creds, timestamp)}, "
                            f"SignedHeaders={signed}, Signature={signature(creds, timestamp, canonical)}")
    del out["host"]        # the HTTP client sends it from the URL (same value)
    return out


def presign(method: str, url: str, creds: Credentials, now: datetime, expires_s: int) -> str:
    """A URL carrying its own signature, valid from ``now`` for ``expires_s`` seconds; signs only ``host``."""
    if not 1 <= expires_s <= MAX_PRESIGN_EXPIRES_S:
        raise ValueError(f"expires_s must be in [1, {MAX_PRESIGN_EXPIRES_S}]")
    parts = urlsplit(url)
    timestamp = amz_date(now)
    query = parse_qsl(parts.query, keep_blank_values=True) + [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{creds.access_key}/{scope(creds, timestamp)}"),
        ("X-Amz-Date", timestamp),
        ("X-Amz-Expires", str(expires_s)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    if creds.session_token:
        query.append(("X-Amz-Security-Token", creds.session_token))
    canonical, _ = canonical_request(method, parts.path, query, {"host": parts.netloc}, UNSIGNED_PAYLOAD)
    query_text = canonical_query(query) + "&X-Amz-Signature=" + signature(creds, timestamp, canonical)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query_text, ""))


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()
