"""Xet CAS API wire shapes, sans-IO: upload answers, the shard event stream, byte-range headers.

Parsers take an answer body and raise ``RemoteError`` (final) or ``TransientError`` (worth a retry) on a bad
one. Byte ranges of files are ``[start, end)`` in xetfs and inclusive ``bytes=a-b`` on the wire. See
docs/protocol.md, "CAS API".
"""
from __future__ import annotations

import json
import re
from xetfs.errors import RemoteError, TransientError

_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


def range_header(start: int, end_excl: int) -> dict[str, str]:
    """``Range: bytes=start-(end-1)`` for the bytes ``[start, end)``."""
    return {"Range": f"bytes={start}-{end_excl - 1}"}


def check_content_range(value: str | None, first: int, last: int, what: str) -> None:
    """A ``Content-Range`` header, when present, names exactly the inclusive bytes ``[first, last]`` asked for."""
    if value is None:
        return
    m = _CONTENT_RANGE_RE.match(value)
    if m is None or (int(m.group(1)), int(m.group(2))) != (first, last):
        raise RemoteError(f"{what}: Content-Range {value!r}, expected bytes {first}-{last}")


def parse_xorb_upload_answer(obj: object) -> bool:
    """``POST /v1/xorbs/{prefix}/{hash}`` -> ``{"was_inserted": bool}``: True when the server stored it."""
    if not isinstance(obj, dict) or not isinstance(obj.get("was_inserted"), bool):
        raise RemoteError(f"xorb upload answer lacks was_inserted: {str(obj)[:200]}")
    return bool(obj["was_inserted"])


def parse_shard_upload_answer_v1(obj: object) -> bool:
    """``POST /v1/shards`` -> ``{"result": 0 | 1}``: 1 when the shard was new."""
    if not isinstance(obj, dict) or obj.get("result") not in (0, 1):
        raise RemoteError(f"shard upload answer lacks result: {str(obj)[:200]}")
    return bool(obj["result"] == 1)


def parse_shard_events(body: bytes) -> bool:
    """The event stream of ``POST /v2/shards``: the last result/error event decides; True when new.

    Lines: ``{"type": "validating", "verified", "total"}`` (progress), then ``{"type": "result", "result": 0|1}``
    or ``{"type": "error", "message", "retryable"}``.
    """
    outcome: dict[str, object] | None = None
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            raise RemoteError(f"shard upload: bad event line {line[:200]!r}") from None
        if isinstance(event, dict) and event.get("type") in ("result", "error"):
            outcome = event
    if outcome is None:
        raise TransientError("shard upload: event stream ended without a result")
    if outcome["type"] == "error":
        cls = TransientError if outcome.get("retryable") else RemoteError
        raise cls(f"shard upload refused: {outcome.get('message', 'unknown error')}")
    return bool(outcome.get("result", 1) != 0)
