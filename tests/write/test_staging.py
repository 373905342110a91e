"""The staging area without FUSE: extents against a set model, the journal across a "crash", space limits."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import trio

from xetfs.core.hashing import MerkleHash
from xetfs.errors import NoSpace, ValidationError
from xetfs.write.journal import Put, XetRef, decode, encode
from xetfs.write.staged import Extents
from xetfs.write.staging import Staging


def test_extents_match_a_set_model() -> None:
    rng = random.Random(1)
    for _ in range(200):
        ext, model = Extents(), set()
        for _ in range(rng.randrange(1, 12)):
            a = rng.randrange(0, 200)
            b = a + rng.randrange(0, 40)
            if rng.random() < 0.15:
                ext.clip(a)
                model = {x for x in model if x < a}
            else:
                ext.add(a, b)
                model |= set(range(a, b))
        assert {x for s, e in ext.ranges() for x in range(s, e)} == model
        assert all(e1 < s2 for (_, e1), (s2, _) in zip(ext.ranges(), ext.ranges()[1:])), "disjoint, merged"
        a, b = sorted(rng.sample(range(0, 260), 2))
        assert {x for s, e in ext.missing(a, b) for x in range(s, e)} == set(range(a, b)) - model


def test_journal_survives_a_crash_and_keeps_the_latest_change_per_path(tmp_path: Path) -> None:
    root = tmp_path / "staging"

    async def first_life() -> None:
        st = Staging(root, 1 << 30)
        sf = st.new_file(10, base_xet=MerkleHash(bytes(range(32))))
        st.write(sf, 2, b"abc")
        st.sync_data(sf)
        await st.persist([st.put("a/file.bin", sf), st.delete("gone.txt"), st.set_base("c0")])
        new = st.new_file(0)
        st.write(new, 0, b"hello")
        st.sync_data(new)
        await st.persist([st.put("b.txt", new)])
        await st.persist([st.done("gone.txt", st.pending["gone.txt"].gen)])
        await st.persist([st.put("c.bin", remote=XetRef("00" * 32, "ab" * 32, 7))])
        await st.persist([st.conflict("c.bin", st.pending["c.bin"].gen, "head1")])
        with pytest.raises(ValidationError):   # one mount per staging area
            Staging(root, 1 << 30)
        st.journal.append([Put("torn", 99)])
        os.close(st._lock_fd)                  # "crash": nothing else is closed or compacted

    trio.run(first_life)
    with open(root / "journal", "ab") as f:
        f.write(b'{"t":"del","path":"b.t')     # a torn last line
    st = Staging(root, 1 << 30)
    assert sorted(st.pending) == ["a/file.bin", "b.txt", "c.bin", "torn"]
    assert st.base_commit == "c0"
    sf = st.pending["a/file.bin"].staged
    assert sf is not None and sf.size == 10 and sf.base_limit == 10 and sf.holes(0, 10) == [(0, 2), (5, 10)]
    assert os.pread(sf.fd, 3, 2) == b"abc"
    assert os.pread(st.pending["b.txt"].staged.fd, 5, 0) == b"hello"
    assert st.pending["c.bin"].conflict == "head1" and st.pending["c.bin"].remote == XetRef("00" * 32, "ab" * 32, 7)
    assert st.pending_bytes() == 10 + 5 + 0   # torn (no data) counts 0, the conflict is excluded
    st.close()


def test_space_is_reserved_and_released(tmp_path: Path) -> None:
    st = Staging(tmp_path / "s", 100)
    sf = st.new_file(0)
    st.write(sf, 0, b"x" * 60)
    with pytest.raises(NoSpace):
        st.new_file(50)
    with pytest.raises(NoSpace):
        st.write(sf, 90, b"y" * 20)
    st.resize(sf, 10)
    assert st.used_bytes == 60, "a file keeps its largest size reserved until it is released"
    st.release_if_unused(sf)
    assert st.used_bytes == 0 and any((tmp_path / "s" / "data").iterdir()), "deleted once the journal says so"
    trio.run(st.persist, [])
    assert not any((tmp_path / "s" / "data").iterdir())
    st.close()


def test_journal_records_round_trip_and_unknown_kinds_are_refused() -> None:
    from xetfs.write.journal import (Base, Conflicted, Del, Deleted, Done, Failed, HoldsBlob, HoldsXet, Intended,
                                     RegularRef, StagedRef)

    records = [Base("c1"), Put("a", 1, StagedRef("id", 9, "00" * 32, None, 9, 4, ((0, 2), (3, 4)))),
               Put("b", 2, remote=RegularRef("c0", "old/b", 3)), Put("c", 3, remote=XetRef("11" * 32, "ab", 5)),
               Del("d", 4), Done("d", 4), Conflicted("a", 1, "h"), Failed("b", 2, "403"),
               Intended("a", 1, HoldsXet("ab", 9)), Intended("b", 2, HoldsBlob("cd", 3)),
               Intended("c", 3, Deleted()),
               Put("e", 5, StagedRef("id2", 1, None, ("c0", "e"), 1, 1))]
    assert [decode(encode(r)) for r in records] == records
    with pytest.raises(ValueError):
        decode({"t": "rename", "path": "a", "gen": 1})
    with pytest.raises(ValueError):
        decode({"t": "put", "path": "a"})
