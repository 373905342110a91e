"""The reconstruction answer on the wire (docs/protocol.md, "Reconstruction"): parsed, written back, refused when
malformed. Plans built from it are tested with the planner in tests/core/test_reconstruction.py."""
from __future__ import annotations

import pytest

from xetfs.core.hashing import MerkleHash
from xetfs.core.reconstruction import FetchRange, ReconstructionTerm
from xetfs.errors import FormatError
from xetfs.protocol.reconstruction import parse_reconstruction_json, to_json_v1


def test_parse_v1_spec_example() -> None:
    h = "5a2c0ae6" * 8
    obj = {"offset_into_first_range": 11012,
           "terms": [{"hash": h, "unpacked_length": 405720, "range": {"start": 97, "end": 101}}],
           "fetch_info": {h: [{"range": {"start": 97, "end": 101}, "url": "http://127.0.0.1:8765/xorb-data/" + h,
                               "url_range": {"start": 6010253, "end": 6416004}}]}}
    r = parse_reconstruction_json(obj)
    x = MerkleHash.from_hex(h)
    assert r.terms == (ReconstructionTerm(x, 97, 101, 405720),)
    assert r.fetch[x] == (FetchRange(x, 97, 101, 6010253, 6416004, "http://127.0.0.1:8765/xorb-data/" + h),)
    assert r.size_bytes == 405720 - 11012
    assert to_json_v1(r, lambda f: f.url) == obj


@pytest.mark.parametrize("obj", [
    {"terms": [{"hash": "zz", "unpacked_length": 1, "range": {"start": 0, "end": 1}}]},
    {"terms": [{"hash": "00" * 32, "unpacked_length": -1, "range": {"start": 0, "end": 1}}]},
    {"terms": [{"hash": "00" * 32, "unpacked_length": 1}]},
    {"terms": "nope"},
    {"terms": [], "fetch_info": []},
])
def test_parse_rejects_bad_json(obj: dict) -> None:
    with pytest.raises(FormatError):
        parse_reconstruction_json(obj)
