"""The reconstruction answer on the wire, v1 (``fetch_info``) and v2 (``xorbs``), sans-IO (docs/protocol.md,
"Reconstruction").

``to_json_v1`` / ``to_json_v2`` write the two response shapes of a ``Reconstruction``; each term may carry the
xetfs extra field ``verification_hash`` (the range hash of exactly the returned chunks; official clients
ignore it). ``parse_reconstruction_json`` reads either shape; a bad shape raises ``FormatError``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xetfs.core.hashing import MerkleHash
from xetfs.core.reconstruction import FetchRange, Reconstruction, ReconstructionTerm
from xetfs.errors import FormatError


def _term_json(t: ReconstructionTerm) -> dict[str, Any]:
    obj: dict[str, Any] = {"hash": str(t.xorb_hash), "unpacked_length": t.unpacked_bytes,
                           "range": {"start": t.chunk_start, "end": t.chunk_end}}
    if t.verification_hash is not None:
        obj["verification_hash"] = str(t.verification_hash)
    return obj


def to_json_v1(r: Reconstruction, url_for: Callable[[FetchRange], str]) -> dict[str, Any]:
    return {
        "offset_into_first_range": r.offset_into_first_range,
        "terms": [_term_json(t) for t in r.terms],
        "fetch_info": {
            str(xorb): [{"range": {"start": f.chunk_start, "end": f.chunk_end}, "url": url_for(f),
                         "url_range": {"start": f.byte_start, "end": f.byte_end}} for f in ranges]
            for xorb, ranges in r.fetch.items()},
    }


def to_json_v2(r: Reconstruction, url_for: Callable[[FetchRange], str]) -> dict[str, Any]:
    xorbs: dict[str, list[dict[str, Any]]] = {}
    for xorb, ranges in r.fetch.items():
        by_url: dict[str, list[dict[str, Any]]] = {}
        for f in ranges:
            by_url.setdefault(url_for(f), []).append(
                {"chunks": {"start": f.chunk_start, "end": f.chunk_end},
                 "bytes": {"start": f.byte_start, "end": f.byte_end}})
        xorbs[str(xorb)] = [{"url": url, "ranges": descs} for url, descs in by_url.items()]
    return {"offset_into_first_range": r.offset_into_first_range,
            "terms": [_term_json(t) for t in r.terms], "xorbs": xorbs}


def _int(obj: Any, key: str) -> int:
    v = obj[key] if isinstance(obj, dict) else None
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise FormatError(f"reconstruction JSON: {key!r} must be a non-negative integer, got {v!r}")
    return v


def _pair(obj: Any, key: str) -> tuple[int, int]:
    if not isinstance(obj, dict) or not isinstance(obj.get(key), dict):
        raise FormatError(f"reconstruction JSON: missing {key!r}")
    return _int(obj[key], "start"), _int(obj[key], "end")


def _parse_term(obj: Any) -> ReconstructionTerm:
    if not isinstance(obj, dict) or not isinstance(obj.get("hash"), str):
        raise FormatError("reconstruction JSON: term without a hash")
    s, e = _pair(obj, "range")
    vh = obj.get("verification_hash")
    return ReconstructionTerm(MerkleHash.from_hex(obj["hash"]), s, e, _int(obj, "unpacked_length"),
                              MerkleHash.from_hex(vh) if isinstance(vh, str) else None)


def _parse_fetch_v1(xorb: MerkleHash, entries: Any) -> list[FetchRange]:
    out = []
    for f in entries if isinstance(entries, list) else []:
        (s, e), (bs, be) = _pair(f, "range"), _pair(f, "url_range")
        out.append(FetchRange(xorb, s, e, bs, be, str(f.get("url", ""))))
    return out


def _parse_fetch_v2(xorb: MerkleHash, entries: Any) -> list[FetchRange]:
    out = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("ranges"), list):
            raise FormatError("reconstruction JSON v2: xorb entry without ranges")
        for desc in entry["ranges"]:
            (s, e), (bs, be) = _pair(desc, "chunks"), _pair(desc, "bytes")
            out.append(FetchRange(xorb, s, e, bs, be, str(entry.get("url", ""))))
    return out


def parse_reconstruction_json(obj: dict[str, Any]) -> Reconstruction:
    """v1 (``fetch_info``) or v2 (``xorbs``) -> Reconstruction; fetch ranges carry their urls."""
    if not isinstance(obj, dict) or not isinstance(obj.get("terms", []), list):
        raise FormatError("reconstruction JSON must be an object with a terms list")
    terms = tuple(_parse_term(t) for t in obj.get("terms", []))
    if "xorbs" in obj:
        section, parse_one = obj["xorbs"], _parse_fetch_v2
    else:
        section, parse_one = obj.get("fetch_info", {}), _parse_fetch_v1
    if not isinstance(section, dict):
        raise FormatError("reconstruction JSON: fetch section must be an object")
    fetch = {MerkleHash.from_hex(k): tuple(parse_one(MerkleHash.from_hex(k), v)) for k, v in section.items()}
    offset = _int(obj, "offset_into_first_range") if "offset_into_first_range" in obj else 0
    return Reconstruction(offset, terms, fetch, sum(t.unpacked_bytes for t in terms))
