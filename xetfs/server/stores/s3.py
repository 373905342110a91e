"""S3-compatible object storage behind the ``stores.base`` contract (docs/architecture.md).

Same contract, same conformance suite (``xetfs.testing.server.check_storage_contract``) as ``LocalStorage``:
keys are checked by ``base.check_key`` and become object names ``PREFIX + key`` in one bucket
(``s3://BUCKET/PREFIX``, path-style URLs ``ENDPOINT/BUCKET/PREFIXkey``). Methods are synchronous and
thread-safe, like ``LocalStorage``: the aiohttp app calls them through ``asyncio.to_thread``.

- ``put_if_absent``: one ``PUT`` with ``If-None-Match: *`` (create-only; the store answers 412 when the
  object exists, and of concurrent writers exactly one wins — SeaweedFS 4.48 and AWS S3 both honour it).
  Objects are immutable and named by their content hash, so a retried PUT that meets its own earlier
  success (412) loses nothing: it reports False, "already present". ``conditional_put=False`` is for stores
  that ignore the header: HEAD then PUT, harmless for content-addressed objects, but two racing writers
  may then both report True. One request body holds the object (single PUT, at most 5 GiB: xorbs are
  <= 64 MiB). The body's sha256 goes both into the signature and into ``x-amz-checksum-sha256``: AWS checks
  the first, SeaweedFS only the second (it answers 400 BadDigest on a mismatch), so a body damaged in
  transit is never stored.
- ``get`` / ``get_range`` (inclusive, clamped like a file read: a start past the end gives b"") / ``size`` /
  ``exists`` / ``delete`` map to GET, GET with ``Range``, HEAD, HEAD, DELETE; 404 -> ``NotFound``.
  ``exists`` is False for a bad key; it raises only when the store cannot answer (``TransientError``).
- ``path_for`` is None (no local file); ``presign_get(key, expires_s)`` returns a URL that anyone may GET
  (with any ``Range``) until it expires: data bytes go from the object store to the client directly.
- ``check()`` (start-up of ``xetfs serve``): one signed HEAD of the bucket, no retries; a bad endpoint, a
  refused connection, rejected credentials or a missing bucket is one clear error naming the store.

Errors are translated by ``xetfs.transport.http`` (one mapping for the whole package); transient ones (connection
errors, timeouts, 429, 5xx) are retried on the pure schedule of ``xetfs.transport.retry``. Requests are signed with
AWS SigV4 (``xetfs.server.stores.sigv4``). Credentials: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, optional
``AWS_SESSION_TOKEN``, ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``; default us-east-1).
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from xetfs.transport.http import status_error, transport_error
from xetfs.transport.params import DEFAULT_HTTP, HttpParams
from xetfs.transport.retry import RetryPolicy, backoff_delay, retry_after_of
from xetfs.errors import RemoteError, TransientError, ValidationError, XetError
from xetfs.server.stores import sigv4
from xetfs.server.stores.base import check_key

log = logging.getLogger(__name__)

MAX_PUT_BYTES = 5 * 1024 ** 3          # the S3 single-PUT limit
STORAGE_RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.2, max_delay_s=5.0, max_total_s=120.0)
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True, slots=True)
class S3Location:
    """``s3://BUCKET/PREFIX``; ``prefix`` is "" or ends with "/"."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not _BUCKET_RE.match(parts.netloc) or parts.query or parts.fragment:
            raise ValidationError(f"bad S3 location {url!r} (want s3://BUCKET/PREFIX)")
        prefix = parts.path.strip("/")
        if prefix:
            check_key(prefix)
            prefix += "/"
        return cls(parts.netloc, prefix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def credentials_from_env(env: Mapping[str, str] | None = None) -> sigv4.Credentials:
    env = os.environ if env is None else env
    access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not access or not secret:
        raise ValidationError("S3 storage needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    return sigv4.Credentials(access, secret, region, session_token=env.get("AWS_SESSION_TOKEN") or None)


class S3Storage:
    """Objects in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO...)."""

    def __init__(self, location: S3Location | str, *, endpoint: str | None = None,
                 credentials: sigv4.Credentials | None = None, conditional_put: bool = True,
                 http: HttpParams = DEFAULT_HTTP, retry: RetryPolicy = STORAGE_RETRY) -> None:
        self.location = S3Location.parse(location) if isinstance(location, str) else location
        self.credentials = credentials or credentials_from_env()
        self.endpoint = (endpoint or f"https://s3.{self.credentials.region}.amazonaws.com").rstrip("/")
        if urlsplit(self.endpoint).scheme not in ("http", "https"):
            raise ValidationError(f"bad S3 endpoint {self.endpoint!r}")
        self.conditional_put = conditional_put
        self.retry = retry
        limits = httpx.Limits(max_connections=http.max_connections,
                              max_keepalive_connections=http.max_keepalive_connections)
        self._client = httpx.Client(timeout=http.timeout(), limits=limits, trust_env=False,
                                    follow_redirects=False, headers={"User-Agent": http.user_agent})

    def __repr__(self) -> str:
        return f"S3Storage({str(self.location)!r}, endpoint={self.endpoint!r})"

    def close(self) -> None:
        self._client.close()

    def url_for(self, key: str) -> str:
        name = self.location.prefix + check_key(key)
        return f"{self.endpoint}/{sigv4.uri_encode(self.location.bucket)}/{sigv4.uri_encode(name, keep_slash=True)}"

    # ----------------------------------------------------------------------------------------- contract

    def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
        url = self.url_for(key)
        if len(data) > MAX_PUT_BYTES:
            raise ValidationError(f"object {key} is {len(data)} bytes; a single S3 PUT holds at most {MAX_PUT_BYTES}")
        if not self.conditional_put and self.exists(key):
            return False
        body = bytes(data)
        digest = hashlib.sha256(body).digest()
        headers = {"content-length": str(len(body)), "content-type": "application/octet-stream",
                   "x-amz-checksum-sha256": base64.b64encode(digest).decode()}
        if self.conditional_put:
            headers["if-none-match"] = "*"
        resp = self._request("PUT", url, headers, body, ok=(200, 412), payload_sha256=digest.hex())
        return resp.status_code == 200

    def get(self, key: str) -> bytes:
        return self._request("GET", self.url_for(key), {}).content

    def get_range(self, key: str, start: int, end_incl: int) -> bytes:
        if start < 0 or end_incl < start:
            raise ValidationError(f"bad range {start}-{end_incl}")
        resp = self._request("GET", self.url_for(key), {"range": f"bytes={start}-{end_incl}"}, ok=(200, 206, 416))
        if resp.status_code == 416:          # start at or past the end of an existing object: like a file read
            return b""
        if resp.status_code == 200:          # a store that ignores Range sends the whole object
            return resp.content[start:end_incl + 1]
        match = _CONTENT_RANGE_RE.match(resp.headers.get("content-range", ""))
        if not match or int(match[1]) != start or int(match[2]) - start + 1 != len(resp.content):
            raise RemoteError(f"GET {key}: answer for bytes={start}-{end_incl} has Content-Range "
                              f"{resp.headers.get('content-range')!r} and {len(resp.content)} bytes")
        return resp.content

    def size(self, key: str) -> int:
        resp = self._request("HEAD", self.url_for(key), {})
        return int(resp.headers["content-length"])

    def exists(self, key: str) -> bool:
        try:
            url = self.url_for(key)
        except ValidationError:
            return False
        return self._request("HEAD", url, {}, ok=(200, 404)).status_code == 200

    def path_for(self, key: str) -> Path | None:
        return None

    def delete(self, key: str) -> None:
        self._request("DELETE", self.url_for(key), {}, ok=(200, 204, 404))

    def presign_get(self, key: str, expires_s: int, *, now: datetime | None = None) -> str:
        """A GET URL valid for ``expires_s`` seconds from ``now`` (default: the current time); any Range."""
        return sigv4.presign("GET", self.url_for(key), self.credentials,
                             now or datetime.now(timezone.utc), expires_s)

    def check(self) -> None:
        """Fail fast (one attempt) unless the bucket answers a signed HEAD with 200."""
        url = f"{self.endpoint}/{sigv4.uri_encode(self.location.bucket)}"
        where = f"S3 storage {self.location} at {self.endpoint}"
        try:
            resp = self._attempt("HEAD", url, {}, b"", (200, 301, 307, 400, 403, 404), sigv4.EMPTY_SHA256)
        except XetError as exc:
            raise TransientError(f"{where} is unreachable: {exc}") from exc
        if resp.status_code == 404:
            raise ValidationError(f"{where}: bucket {self.location.bucket!r} does not exist")
        if resp.status_code == 403:
            raise ValidationError(f"{where}: access denied (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
        if resp.status_code != 200:
            raise ValidationError(f"{where}: HEAD bucket answered {resp.status_code} {resp.reason_phrase} "
                                  f"(wrong endpoint or region?)")

    # ------------------------------------------------------------------------------------------- requests

    def _request(self, method: str, url: str, headers: dict[str, str], body: bytes = b"",
                 ok: tuple[int, ...] = (200, 206), payload_sha256: str = sigv4.EMPTY_SHA256) -> httpx.Response:
        """One signed request with retries of transient failures; an answer not in ``ok`` raises its error."""
        started = time.monotonic()
        failures = 0
        while True:
            try:
                return self._attempt(method, url, headers, body, ok, payload_sha256)
            except XetError as exc:
                failures += 1
                if not exc.retryable or failures >= self.retry.max_attempts:
                    raise
                delay = backoff_delay(failures, self.retry, random.random(), retry_after_of(exc))
                if time.monotonic() - started + delay > self.retry.max_total_s:
                    raise
                log.warning("%s; retry %d in %.1f s", exc, failures, delay)
                time.sleep(delay)

    def _attempt(self, method: str, url: str, headers: dict[str, str], body: bytes, ok: tuple[int, ...],
                 payload_sha256: str) -> httpx.Response:
        signed = sigv4.sign_headers(method, url, headers, self.credentials, datetime.now(timezone.utc),
                                    payload_sha256)
        try:
            resp = self._client.request(method, url, headers=signed, content=body or None)
        except httpx.HTTPError as exc:
            raise transport_error(exc, method=method, url=url) from exc
        if resp.status_code in ok:
            return resp
        if resp.status_code == 409 and method == "PUT":
            # AWS: a concurrent conditional write of the same key is in progress ("ConditionalRequestConflict").
            err: XetError | None = TransientError(f"{method} {urlsplit(url).path}: 409 conditional write conflict")
        else:
            err = status_error(resp.status_code, method=method, url=url, headers=resp.headers,
                               body=resp.content, reason=resp.reason_phrase)
        if err is None:
            raise RemoteError(f"{method} {urlsplit(url).path}: unexpected {resp.status_code} {resp.reason_phrase}")
        raise err
