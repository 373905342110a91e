"""The readahead policy: deterministic, format-aware, never dependent on the order requests arrive in."""
from __future__ import annotations

import itertools
import random

from xetfs.read.readahead import Readahead, Runs

KiB = 1024
MiB = 1024 * KiB


def test_window_is_at_most_the_sequential_run_so_far() -> None:
    ra = Readahead(max_bytes=800)
    ends = [ra.fetch_end(off, 10) - (off + 10) for off in range(0, 100, 10)]
    assert ends == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    ends = [ra.fetch_end(off, 10) - (off + 10) for off in range(100, 1000, 10)]
    assert max(ends) == 800 and ends[-1] == 800                     # capped at max_bytes
    assert ra.fetch_end(100_000, 10) == 100_020                      # a jump: a new run of 10 bytes


def test_the_fetched_extent_does_not_depend_on_arrival_order() -> None:
    requests = [(off, 4096) for off in range(0, 8 * 4096, 4096)]
    extents = set()
    for perm in itertools.islice(itertools.permutations(requests), 0, None, 97):
        ra = Readahead(max_bytes=1 << 20)
        extents.add(max(ra.fetch_end(o, n) for o, n in perm))
    assert extents == {16 * 4096}


def _tensors(sizes: list[int], header: int = 1000) -> list[int]:
    bounds, at = [header], header
    for n in sizes:
        at += n
        bounds.append(at)
    return bounds


def test_one_tensor_loaded_through_page_faults_stays_inside_it() -> None:
    """Kernel read-around spills 128 KiB over both ends of the tensor; only the tensor is read ahead.
    Requests the kernel has in flight together reach the policy in any order (trio does not keep the
    order its tasks were started in): each run shuffles every group of three neighbouring requests."""
    b = _tensors([64 * MiB, 16 * MiB, 64 * MiB])
    t, e = b[1], b[2]
    for order in range(20):
        ra = Readahead(max_bytes=64 * MiB, boundaries=b)
        issued = [(t - 128 * KiB, 256 * KiB), (e - 128 * KiB, 256 * KiB)]
        issued += [(o, 256 * KiB) for o in range(t + 128 * KiB, e - 128 * KiB, 256 * KiB)]
        issued += [(e + 128 * KiB, 256 * KiB)]           # the kernel reading ahead past the end
        rng = random.Random(order)
        reqs = []
        for i in range(0, len(issued), 3):
            group = issued[i:i + 3]
            rng.shuffle(group)
            reqs += group
        top = max(ra.fetch_end(o, n) for o, n in reqs)
        assert top == e + 384 * KiB, order              # no more than the kernel asked for
        assert ra.decisions.get("sequential", 0) == 0


def test_a_read_inside_a_tensor_fetches_to_its_end() -> None:
    b = _tensors([1000, 4000, 100_000])
    ra = Readahead(max_bytes=10_000, boundaries=b, spill_bytes=8, ahead_bytes=20)
    assert ra.fetch_end(b[1], 10) == b[1] + 10                      # entered at its start ...
    assert ra.fetch_end(b[1] + 10, 20) == b[2]                      # ... and read on: to its end
    assert ra.fetch_end(b[2] - 5, 10) == b[2] + 5                   # straddles a boundary: itself only
    assert ra.fetch_end(b[2] + 50_000, 30) == b[2] + 50_030        # the middle of a tensor: itself only
    assert ra.fetch_end(b[2] + 5, 30) == b[2] + 10_035             # its run holds the start (5 bytes
    assert ra.decisions["tensor_aligned"] == 2                      # before it): max_bytes past the read
    assert ra.decisions["exact"] == 3


def test_a_reader_walking_the_file_crosses_tensors_and_streams() -> None:
    b = _tensors([4 * MiB] * 8)
    ra = Readahead(max_bytes=64 * MiB, boundaries=b)
    offsets = range(0, b[3], 256 * KiB)
    ends = [ra.fetch_end(o, 256 * KiB) for o in offsets]
    assert ra.decisions["sequential"] > 0
    run_end = offsets[-1] + 256 * KiB
    assert ends[-1] == 2 * run_end                                   # the run's length ahead, past tensors


def test_consumed_runs_are_bounded() -> None:
    ra = Readahead(max_runs=8)
    for i in range(100):
        ra.fetch_end(i * 1000, 10)
    assert ra.consumed_bytes == 8 * 10


def test_runs_merge_in_any_order_and_count_the_bytes_below_a_point() -> None:
    runs = Runs()
    for a, b in [(300, 400), (0, 100), (100, 150), (350, 500), (700, 800)]:
        runs.add(a, b)
    assert runs.add(140, 160) == (0, 160)
    assert runs.total == 160 + 200 + 100
    assert [runs.below(p) for p in (0, 50, 200, 450, 750, 10_000)] == [0, 50, 160, 310, 410, 460]


def test_a_reader_that_loads_the_whole_file_is_recognised() -> None:
    b = _tensors([1 * MiB] * 40)
    ra = Readahead(boundaries=b)
    for k in range(10):                                   # ten tensors, one page each: not yet
        ra.fetch_end(b[k * 2] + 100, 4096)
    assert ra.regions_touched() == 10 and not ra.wants_whole_file(b[-1])
    for k in range(10, 16):
        ra.fetch_end(b[k * 2] + 100, 4096)
    assert ra.wants_whole_file(b[-1])                     # sixteen tensors touched
    other = Readahead()
    other.fetch_end(0, 40 * MiB)
    assert other.consumed_bytes == 40 * MiB and not other.wants_whole_file(100 * MiB)
    other.fetch_end(60 * MiB, 10 * MiB)
    assert other.wants_whole_file(100 * MiB)              # half of it consumed
    parquet = Readahead(boundaries=b)
    parquet.set_regions(b, "column")
    for k in range(20):
        parquet.fetch_end(b[k * 2] + 100, 4096)
    assert not parquet.wants_whole_file(b[-1])            # columns are not tensors: only the share counts
