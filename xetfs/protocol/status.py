"""HTTP status <-> xetfs error: the one table both sides use (docs/protocol.md, "Status codes").

Client side, ``status_error`` turns an answer into an error:

    400 -> ValidationError (FormatError / IntegrityError when the server names them)
    401 -> Unauthorized        403 -> Forbidden          404 -> NotFound (the named code kept in the message)
    409 -> AlreadyExists       412 -> Conflict           416 -> RangeNotSatisfiable
    408, 429, 5xx except 501 -> TransientError (retryable; Retry-After kept)
    501 and any other status -> RemoteError (final; 501 is the v2 -> v1 fallback signal)

A 400 may name its class in an ``X-Error-Code`` header or an ``error_type``/``code`` JSON field. Server side,
each error class declares the status it is answered with (``XetError.status``). Messages are one line:
``GET /path: 404 Not Found (RepoNotFound): detail``. Sans-IO: the caller passes the wall clock for
``Retry-After: <HTTP-date>``.
"""
from __future__ import annotations

import email.utils
import json
from collections.abc import Mapping
from urllib.parse import urlsplit

from xetfs import errors
from xetfs.errors import XetError

MAX_DETAIL_CHARS = 300
FINAL_BY_STATUS: Mapping[int, type[XetError]] = {
    400: errors.ValidationError, 401: errors.Unauthorized, 403: errors.Forbidden, 404: errors.NotFound,
    409: errors.AlreadyExists, 412: errors.Conflict, 416: errors.RangeNotSatisfiable,
}
# The classes a 400 answer may name (X-Error-Code header, or an "error_type"/"code" JSON field).
NAMED_400: Mapping[str, type[XetError]] = {
    "FormatError": errors.FormatError, "IntegrityError": errors.IntegrityError,
    "ValidationError": errors.ValidationError,
}
# Statuses after which the v2 reconstruction/upload routes fall back to v1.
V1_FALLBACK_STATUSES = frozenset({404, 501})


def is_transient(status: int) -> bool:
    """Worth another try after a backoff: 408, 429 and 5xx except 501."""
    return status in (408, 429) or (status >= 500 and status != 501)


def error_class(status: int, code: str | None = None) -> type[XetError] | None:
    """The error class for ``status`` (and the class a 400 names), or None for 1xx-3xx."""
    if status < 400:
        return None
    if status == 400 and code is not None and code in NAMED_400:
        return NAMED_400[code]
    if status in FINAL_BY_STATUS:
        return FINAL_BY_STATUS[status]
    return errors.TransientError if is_transient(status) else errors.RemoteError


def parse_retry_after(value: str | None, now_unix_s: float) -> float | None:
    """``Retry-After: <seconds>`` or ``Retry-After: <HTTP-date>`` -> seconds from now (>= 0), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_unix_s)


def detail_of(body: bytes) -> str:
    """A one-line, bounded excerpt of an error body (its ``error``/``message``/``detail`` field if JSON)."""
    text = body[:4096].decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        for key in ("error", "message", "detail"):
            if isinstance(obj.get(key), str):
                text = obj[key]
                break
    text = " ".join(text.split())
    return text[:MAX_DETAIL_CHARS] + ("..." if len(text) > MAX_DETAIL_CHARS else "")


def named_code(headers: Mapping[str, str], body: bytes) -> str | None:
    """The error code the server named: ``X-Error-Code``, else an ``error_type``/``code`` JSON field."""
    code = headers.get("x-error-code")
    if code:
        return code
    try:
        obj = json.loads(body[:4096])
    except ValueError:
        return None
    if isinstance(obj, dict):
        for key in ("error_type", "code"):
            if isinstance(obj.get(key), str):
                return str(obj[key])
    return None


def request_label(method: str, url: str) -> str:
    """``GET /path``: how messages name a request (the path only: no host, no query with signatures)."""
    return f"{method} {urlsplit(url).path}"


def status_error(status: int, *, method: str, url: str, now_unix_s: float, headers: Mapping[str, str] | None = None,
                 body: bytes = b"", reason: str = "") -> XetError | None:
    """The xetfs error for an HTTP answer, or None for 1xx-3xx."""
    headers = headers if headers is not None else {}
    code = named_code(headers, body) if status >= 400 else None
    cls = error_class(status, code)
    if cls is None:
        return None
    label = f"{status} {reason}".strip() + (f" ({code})" if code else "")
    detail = detail_of(body)
    return cls(f"{request_label(method, url)}: {label}" + (f": {detail}" if detail else ""), http_status=status,
               retry_after_s=parse_retry_after(headers.get("retry-after"), now_unix_s))
