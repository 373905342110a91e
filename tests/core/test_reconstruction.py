"""Reconstruction plans (docs/protocol.md, "Reconstruction"): Range rules, planned reads cover exactly the
requested bytes, JSON v1/v2."""
from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xetfs.core.chunking import Chunk
from xetfs.core.hashing import MerkleHash, chunk_hash, verification_hash
from xetfs.core.reconstruction import (
    FetchRange,
    Reconstruction,
    assemble,
    decode_fetched,
    locate,
    parse_range_header,
    plan_read,
    plan_reconstruction,
)
from xetfs.core.shard import FileTerm
from xetfs.core.xorb import BuiltXorb, XorbBuilder
from xetfs.errors import FormatError, IntegrityError, RangeNotSatisfiable, ValidationError
from xetfs.protocol.reconstruction import parse_reconstruction_json, to_json_v1, to_json_v2

# ------------------------------------------------------------------------------------------------ fixtures


@dataclass
class Layout:
    xorbs: dict[MerkleHash, BuiltXorb]
    terms: list[FileTerm]
    data: bytes

    def offsets(self, h: MerkleHash) -> tuple[int, ...]:
        return self.xorbs[h].chunk_offsets

    def sizes(self, h: MerkleHash) -> tuple[int, ...]:
        return self.xorbs[h].chunk_sizes

    def hashes(self, h: MerkleHash) -> tuple[MerkleHash, ...]:
        return self.xorbs[h].chunk_hashes

    def fetch_bytes(self, f: FetchRange) -> bytes:
        return self.xorbs[f.xorb_hash].data[f.byte_start:f.byte_end + 1]


def build_xorb(chunks: list[bytes]) -> BuiltXorb:
    b = XorbBuilder()
    for c in chunks:
        b.add(Chunk(chunk_hash(c), c))
    return b.finish()


chunk_bytes = st.one_of(st.binary(min_size=1, max_size=40),
                        st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=3), st.integers(20, 60)))


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    """1-3 xorbs of 1-8 chunks; a file of 0-8 terms picking random chunk ranges (alternating and repeated)."""
    xorbs = {}
    for _ in range(draw(st.integers(1, 3))):
        x = build_xorb(draw(st.lists(chunk_bytes, min_size=1, max_size=8)))
        xorbs[x.hash] = x
    keys = sorted(xorbs)
    terms, parts = [], []
    for _ in range(draw(st.integers(0, 8))):
        x = xorbs[draw(st.sampled_from(keys))]
        n = len(x.chunk_hashes)
        s = draw(st.integers(0, n - 1))
        e = draw(st.integers(s + 1, n))
        terms.append(FileTerm(x.hash, s, e, sum(x.chunk_sizes[s:e])))
        parts.append(b"".join(_chunk_data(x, s, e)))
    return Layout(xorbs, terms, b"".join(parts))


def _chunk_data(x: BuiltXorb, s: int, e: int) -> list[bytes]:
    from xetfs.core.xorb import decode_chunks

    return decode_chunks(x.data)[s:e]


def read_through(layout: Layout, r: Reconstruction, offset: int = 0, size: int | None = None) -> bytes:
    plan = plan_read(r, offset, size)
    decoded = {f: decode_fetched(f, layout.fetch_bytes(f)) for f in plan.fetches}
    return assemble(plan, decoded)


def url_for(f: FetchRange) -> str:
    return f"http://127.0.0.1:1/xorb-data/{f.xorb_hash}"


def url_per_range(f: FetchRange) -> str:
    return f"http://127.0.0.1:1/xorb-data/{f.xorb_hash}?r={f.byte_start}-{f.byte_end}"


def windows(total: int) -> st.SearchStrategy[tuple[int, int]]:
    if total == 0:
        return st.just((0, 0))
    return st.integers(0, total - 1).flatmap(lambda a: st.tuples(st.just(a), st.integers(a + 1, total)))


# ------------------------------------------------------------------------------------------------ Range header


@pytest.mark.parametrize("value,total,expected", [
    (None, 100, None),
    ("bytes=0-9", 100, (0, 10)),
    ("bytes=90-200", 100, (90, 100)),
    ("bytes=99-99", 100, (99, 100)),
    ("bytes=10-", 100, (10, 100)),
    ("bytes=-10", 100, (90, 100)),
    ("bytes=-200", 100, (0, 100)),
    ("bytes=0-", 0, (0, 0)),
    ("bytes=0-255999999", 0, (0, 0)),
    ("bytes=0-255999999", 1000, (0, 1000)),
    ("bytes=-5", 0, (0, 0)),
])
def test_range_header(value: str | None, total: int, expected: tuple[int, int] | None) -> None:
    assert parse_range_header(value, total) == expected


@pytest.mark.parametrize("value,total", [
    ("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=1-10", 0), ("bytes=256000000-767999999", 1000),
    ("bytes=-0", 10),
])
def test_range_header_416(value: str, total: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range_header(value, total)
    assert info.value.status == 416


@pytest.mark.parametrize("value", ["items=0-1", "bytes=", "bytes=-", "bytes=5-2", "bytes=0-1,4-5", "bytes=a-b"])
def test_range_header_malformed(value: str) -> None:
    with pytest.raises(ValidationError):
        parse_range_header(value, 100)


@given(st.integers(0, 300), st.integers(0, 300), st.integers(0, 300))
def test_range_header_model(a: int, b: int, total: int) -> None:
    if b < a:
        return
    if a >= total and not (a == 0 and total == 0):
        with pytest.raises(RangeNotSatisfiable):
            parse_range_header(f"bytes={a}-{b}", total)
    else:
        assert parse_range_header(f"bytes={a}-{b}", total) == (a, min(b + 1, total))


# ------------------------------------------------------------------------------------------------ plans

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_plan_shape(layout: Layout, r: Reconstruction, start: int, end: int) -> None:
    for t in r.terms:
        holders = [f for f in r.fetch[t.xorb_hash] if f.contains(t)]
        assert len(holders) == 1, "every term lies inside exactly one fetch range of its xorb"
        assert t.unpacked_bytes == sum(layout.sizes(t.xorb_hash)[t.chunk_start:t.chunk_end])
        assert t.verification_hash == verification_hash(layout.hashes(t.xorb_hash)[t.chunk_start:t.chunk_end])
    for xorb, ranges in r.fetch.items():
        offsets = layout.offsets(xorb)
        for f in ranges:
            assert (f.byte_start, f.byte_end) == (offsets[f.chunk_start], offsets[f.chunk_end] - 1)
        for a, b in zip(ranges, ranges[1:]):
            assert a.chunk_end < b.chunk_start, "fetch ranges of a xorb are merged and sorted"
    if r.terms:  # minimal: the first kept chunk contains `start`, the last kept chunk starts before `end`
        first = r.terms[0]
        assert r.offset_into_first_range < layout.sizes(first.xorb_hash)[first.chunk_start]
        covered = sum(t.unpacked_bytes for t in r.terms) - r.offset_into_first_range
        last = r.terms[-1]
        assert covered - layout.sizes(last.xorb_hash)[last.chunk_end - 1] < end - start <= covered


@SETTINGS
@given(st.data())
def test_planned_read_covers_exactly_the_range(data: st.DataObject) -> None:
    layout = data.draw(layouts())
    start, end = data.draw(windows(len(layout.data)))
    r = plan_reconstruction(layout.terms, (start, end), layout.offsets, layout.hashes, chunk_sizes=layout.sizes)
    assert r.file_size == len(layout.data)
    check_plan_shape(layout, r, start, end)
    assert read_through(layout, r, 0, end - start) == layout.data[start:end]
    to_json = data.draw(st.sampled_from([to_json_v1, to_json_v2]))
    parsed = parse_reconstruction_json(to_json(r, data.draw(st.sampled_from([url_for, url_per_range]))))
    assert read_through(layout, parsed, 0, end - start) == layout.data[start:end]


@SETTINGS
@given(st.data())
def test_untrimmed_plan_still_reads_exactly(data: st.DataObject) -> None:
    """Without chunk sizes the edge terms stay whole; offset_into_first_range makes up for it."""
    layout = data.draw(layouts())
    start, end = data.draw(windows(len(layout.data)))
    r = plan_reconstruction(layout.terms, (start, end), layout.offsets)
    assert all(t.verification_hash is None for t in r.terms)
    assert read_through(layout, r, 0, end - start) == layout.data[start:end]


@SETTINGS
@given(st.data())
def test_window_of_a_full_reconstruction(data: st.DataObject) -> None:
    layout = data.draw(layouts())
    r = parse_reconstruction_json(to_json_v2(plan_reconstruction(layout.terms, None, layout.offsets,
                                                                 layout.hashes), url_for))
    assert read_through(layout, r) == layout.data
    start, end = data.draw(windows(len(layout.data)))
    plan = plan_read(r, start, end - start)
    assert set(plan.fetches) <= {f for fs in r.fetch.values() for f in fs}
    assert read_through(layout, r, start, end - start) == layout.data[start:end]


@SETTINGS
@given(st.data())
def test_json_roundtrip(data: st.DataObject) -> None:
    layout = data.draw(layouts())
    start, end = data.draw(windows(len(layout.data)))
    r = plan_reconstruction(layout.terms, (start, end), layout.offsets, layout.hashes, chunk_sizes=layout.sizes)
    for to_json in (to_json_v1, to_json_v2):
        for urls in (url_for, url_per_range):
            parsed = parse_reconstruction_json(to_json(r, urls))
            assert parsed.terms == r.terms
            assert parsed.offset_into_first_range == r.offset_into_first_range
            assert parsed.fetch == {x: tuple(replace(f, url=urls(f)) for f in fs) for x, fs in r.fetch.items()}


@SETTINGS
@given(st.data())
def test_locate_chunks(data: st.DataObject) -> None:
    layout = data.draw(layouts())
    start, end = data.draw(windows(len(layout.data)))
    spans = locate(layout.terms, start, end - start, lambda x, s, e: layout.sizes(x)[s:e])
    if start == end:
        assert spans == []
        return
    assert spans[0].file_offset <= start < spans[0].file_offset + spans[0].size_bytes
    assert spans[-1].file_offset < end <= spans[-1].file_offset + spans[-1].size_bytes
    joined = b""
    for a in spans:
        assert a.file_offset == spans[0].file_offset + len(joined)
        chunk = _chunk_data(layout.xorbs[a.xorb_hash], a.chunk_index, a.chunk_index + 1)[0]
        assert len(chunk) == a.size_bytes
        joined += chunk
    assert joined[start - spans[0].file_offset:end - spans[0].file_offset] == layout.data[start:end]


# ------------------------------------------------------------------------------------------------ examples


def two_xorb_layout() -> Layout:
    a = build_xorb([bytes([i]) * (10 + i) for i in range(6)])
    b = build_xorb([bytes([100 + i]) * (7 + i) for i in range(5)])
    terms = [FileTerm(a.hash, 0, 3, sum(a.chunk_sizes[0:3])), FileTerm(b.hash, 1, 4, sum(b.chunk_sizes[1:4])),
             FileTerm(a.hash, 3, 6, sum(a.chunk_sizes[3:6])), FileTerm(b.hash, 0, 2, sum(b.chunk_sizes[0:2]))]
    xorbs = {a.hash: a, b.hash: b}
    data = b"".join(b"".join(_chunk_data(xorbs[t.xorb_hash], t.chunk_start, t.chunk_end)) for t in terms)
    return Layout(xorbs, terms, data)


def test_alternating_terms_merge_fetch_ranges() -> None:
    layout = two_xorb_layout()
    a, b = layout.terms[0].xorb_hash, layout.terms[1].xorb_hash
    r = plan_reconstruction(layout.terms, None, layout.offsets, layout.hashes, chunk_sizes=layout.sizes)
    assert r.offset_into_first_range == 0 and len(r.terms) == 4
    assert [(f.chunk_start, f.chunk_end) for f in r.fetch[a]] == [(0, 6)]   # adjacent [0,3) + [3,6)
    assert [(f.chunk_start, f.chunk_end) for f in r.fetch[b]] == [(0, 4)]   # overlapping [1,4) + [0,2)
    assert r.fetch[a][0].byte_end == len(layout.xorbs[a].data) - 1
    obj = to_json_v1(r, url_for)
    assert obj["fetch_info"][str(a)][0]["url_range"] == {"start": 0, "end": len(layout.xorbs[a].data) - 1}
    assert obj["terms"][1] == {"hash": str(b), "unpacked_length": 8 + 9 + 10, "range": {"start": 1, "end": 4},
                               "verification_hash": str(r.terms[1].verification_hash)}


def test_trims_edge_chunks() -> None:
    layout = two_xorb_layout()   # first term: chunks of 10, 11, 12 bytes
    r = plan_reconstruction(layout.terms, (12, 25), layout.offsets, chunk_sizes=layout.sizes)
    assert [(t.chunk_start, t.chunk_end) for t in r.terms] == [(1, 3)]
    assert r.offset_into_first_range == 2 and r.terms[0].unpacked_bytes == 23
    r = plan_reconstruction(layout.terms, (12, 21), layout.offsets, chunk_sizes=layout.sizes)
    assert [(t.chunk_start, t.chunk_end, t.unpacked_bytes) for t in r.terms] == [(1, 2, 11)]
    assert read_through(layout, r, 0, 9) == layout.data[12:21]


def test_empty_file() -> None:
    r = plan_reconstruction([], parse_range_header("bytes=0-255999999", 0), lambda h: (0,))
    assert r.terms == () and r.fetch == {} and r.file_size == 0
    assert to_json_v1(r, url_for) == {"offset_into_first_range": 0, "terms": [], "fetch_info": {}}
    assert to_json_v2(r, url_for) == {"offset_into_first_range": 0, "terms": [], "xorbs": {}}
    assert read_through(two_xorb_layout(), parse_reconstruction_json({"terms": [], "xorbs": {}})) == b""


def test_v2_groups_ranges_by_url() -> None:
    layout = two_xorb_layout()
    a = layout.terms[0].xorb_hash
    terms = [FileTerm(a, 0, 2, sum(layout.sizes(a)[0:2])), FileTerm(a, 4, 6, sum(layout.sizes(a)[4:6]))]
    r = plan_reconstruction(terms, None, layout.offsets)
    entries = to_json_v2(r, url_for)["xorbs"][str(a)]
    assert len(entries) == 1 and [d["chunks"] for d in entries[0]["ranges"]] == [
        {"start": 0, "end": 2}, {"start": 4, "end": 6}]
    assert len(to_json_v2(r, url_per_range)["xorbs"][str(a)]) == 2


def test_verification_detects_wrong_chunks() -> None:
    layout = two_xorb_layout()
    r = plan_reconstruction(layout.terms, None, layout.offsets, layout.hashes)
    plan = plan_read(r)
    decoded = {f: decode_fetched(f, layout.fetch_bytes(f)) for f in plan.fetches}
    assert assemble(plan, decoded) == layout.data
    f = plan.fetches[0]
    swapped = list(decoded[f])
    swapped[0] = bytes([255]) * len(swapped[0])        # same size, other content
    with pytest.raises(IntegrityError):
        assemble(plan, {**decoded, f: swapped})
    bad_term = replace(r.terms[0], verification_hash=r.terms[1].verification_hash)
    bad = Reconstruction(r.offset_into_first_range, (bad_term,) + r.terms[1:], r.fetch, r.file_size)
    with pytest.raises(IntegrityError):
        read_through(layout, bad)
    short = replace(r.terms[0], unpacked_bytes=r.terms[0].unpacked_bytes + 1)
    with pytest.raises(IntegrityError):
        read_through(layout, Reconstruction(0, (short,), r.fetch, r.file_size))


def test_term_outside_every_fetch_range() -> None:
    layout = two_xorb_layout()
    r = plan_reconstruction(layout.terms[:1], None, layout.offsets)
    t = r.terms[0]
    r2 = Reconstruction(0, (replace(t, chunk_end=t.chunk_end + 1),), r.fetch, r.file_size)
    with pytest.raises(FormatError):
        plan_read(r2)


def test_fetch_bytes_must_match() -> None:
    layout = two_xorb_layout()
    r = plan_reconstruction(layout.terms, None, layout.offsets)
    f = next(iter(r.fetch.values()))[0]
    with pytest.raises(FormatError):
        decode_fetched(f, layout.fetch_bytes(f)[:-1])
