"""The HTTP status <-> error table (docs/protocol.md, "Status codes"), sans-IO."""
from __future__ import annotations

import pytest

from xetfs import errors
from xetfs.protocol.status import parse_retry_after, status_error

URL = "http://127.0.0.1:1/api/models/o/n/tree/main"


@pytest.mark.parametrize("status,cls,retryable", [
    (400, errors.ValidationError, False), (401, errors.Unauthorized, False), (403, errors.Forbidden, False),
    (404, errors.NotFound, False), (409, errors.AlreadyExists, False), (412, errors.Conflict, False),
    (416, errors.RangeNotSatisfiable, False), (408, errors.TransientError, True),
    (429, errors.TransientError, True), (500, errors.TransientError, True), (502, errors.TransientError, True),
    (503, errors.TransientError, True), (504, errors.TransientError, True), (501, errors.RemoteError, False),
    (405, errors.RemoteError, False),
])
def test_status_mapping(status: int, cls: type[errors.XetError], retryable: bool) -> None:
    exc = status_error(status, method="GET", url=URL, body=b'{"error": "boom"}', now_unix_s=0.0)
    assert type(exc) is cls
    assert exc.retryable is retryable
    assert exc.http_status == status
    assert str(exc) == f"GET /api/models/o/n/tree/main: {status}: boom"


def test_success_is_not_an_error() -> None:
    assert status_error(206, method="GET", url=URL, now_unix_s=0.0) is None


def test_named_codes_and_retry_after() -> None:
    exc = status_error(404, method="GET", url=URL, now_unix_s=0.0, headers={"x-error-code": "RepoNotFound"},
                       body=b'{"error": "no repo o/n"}', reason="Not Found")
    assert str(exc) == "GET /api/models/o/n/tree/main: 404 Not Found (RepoNotFound): no repo o/n"
    fmt = status_error(400, method="POST", url=URL, now_unix_s=0.0, headers={"x-error-code": "FormatError"})
    assert type(fmt) is errors.FormatError
    busy = status_error(429, method="GET", url=URL, now_unix_s=0.0, headers={"retry-after": "3"})
    assert busy is not None and busy.retry_after_s == 3.0
    long = status_error(500, method="GET", url=URL, now_unix_s=0.0, body=b"x" * 5000)
    assert len(str(long)) < 400 and "\n" not in str(long)


def test_parse_retry_after() -> None:
    assert parse_retry_after("7", 0.0) == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", 1445412480.0) == pytest.approx(10.0)
    assert parse_retry_after("soon", 0.0) is None
    assert parse_retry_after(None, 0.0) is None


def test_every_error_class_declares_its_server_status() -> None:
    """The server answers each error with its class's status; the client maps that status back to the class."""
    for cls in (errors.ValidationError, errors.NotFound, errors.RangeNotSatisfiable, errors.Conflict,
                errors.AlreadyExists, errors.Unauthorized, errors.Forbidden):
        back = status_error(cls.status, method="GET", url=URL, now_unix_s=0.0)
        assert type(back) is cls
