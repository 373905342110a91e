"""``fs.follow.swap`` on the VFS model without FUSE: two commits as dicts of paths -> bytes are the reference
(docs/architecture.md, "Following a branch")."""
from __future__ import annotations

import hashlib

import trio

from xetfs.core.hashing import MerkleHash
from xetfs.fs.follow import plan, swap
from xetfs.fs.vfs import ROOT_INODE, Tree, Vfs
from xetfs.protocol.hub import TreeEntry
from xetfs.testing.readers import Unstreamed

C1 = {"w.bin": b"one" * 1000, "r.txt": b"regular one\n", "same.txt": b"same\n", "old/gone.txt": b"bye\n",
      "old/also.bin": b"x" * 500}
C2 = {"w.bin": b"two!" * 900, "r.txt": b"regular two, longer\n", "same.txt": b"same\n", "new/dir/n.bin": b"n" * 9}
XET = {"w.bin", "old/also.bin", "new/dir/n.bin"}


def _hash(data: bytes) -> MerkleHash:
    return MerkleHash(hashlib.sha256(data).digest())


class Reader(Unstreamed):
    def __init__(self, data: bytes) -> None:
        self.data, self.size = data, len(data)

    async def read(self, offset: int, size: int, *, fetch_end: int | None = None) -> bytes:
        return self.data[offset:offset + size]


class Backend:
    """Xet files by hash; regular files by (commit, path)."""

    def __init__(self) -> None:
        self.commits = {"c1": C1, "c2": C2}
        self.by_hash = {_hash(d): d for files in self.commits.values() for d in files.values()}

    def reader(self, xet_hash: MerkleHash, size: int) -> Reader:
        return Reader(self.by_hash[xet_hash])

    async def read_regular(self, path: str, file_size: int, offset: int, size: int) -> bytes:
        return await self.read_regular_at("c1", path, file_size, offset, size)   # the mount's first commit

    async def read_regular_at(self, commit: str, path: str, file_size: int, offset: int, size: int) -> bytes:
        return self.commits[commit][path][offset:offset + size]


def _entries(files: dict[str, bytes]) -> list[TreeEntry]:
    return [TreeEntry(p, "file", len(d), hashlib.sha1(d).hexdigest(), _hash(d) if p in XET else None)
            for p, d in files.items()]


def _walk(vfs: Vfs, ino: int = ROOT_INODE, prefix: str = "") -> dict[str, int]:
    out: dict[str, int] = {}
    for name, attr, _ in vfs.readdir(ino, 0):
        out.update(_walk(vfs, attr.inode, f"{prefix}{name}/") if attr.is_dir else {prefix + name: attr.inode})
    return out


async def _read_all(vfs: Vfs, fh: int) -> bytes:
    return await vfs.read(fh, 0, 1 << 20)


def test_a_swap_shows_the_new_commit_while_open_handles_keep_the_old_one() -> None:
    async def main() -> None:
        old = _entries(C1)
        vfs = Vfs(Tree(old), Backend(), mtime_ns=1)
        before = _walk(vfs)
        open_old = {p: await vfs.open(before[p], 0) for p in ("w.bin", "r.txt", "old/also.bin")}
        stale = swap(vfs, plan({e.path: e for e in old}, _entries(C2)), "c1", "c2", mtime_ns=2)
        after = _walk(vfs)
        assert set(after) == set(C2)                                   # "old/" emptied: gone with its files
        for path, data in C2.items():
            assert await _read_all(vfs, await vfs.open(after[path], 0)) == data
            assert vfs.getattr(after[path]).size == len(data)
        for path, fh in open_old.items():                              # handles opened before: old bytes
            assert await _read_all(vfs, fh) == C1[path]
        assert after["same.txt"] == before["same.txt"] and vfs.getattr(after["same.txt"]).mtime_ns == 1
        assert after["w.bin"] != before["w.bin"] and vfs.getattr(after["w.bin"]).mtime_ns == 2
        forgotten = {(vfs.tree.name(p) if p != ROOT_INODE else "", name) for p, name, _ in stale}
        assert {("", "w.bin"), ("", "r.txt"), ("", "old"), ("dir", "n.bin"), ("old", "gone.txt")} <= forgotten
        assert not any(name == "same.txt" for _, name, _ in stale)
    trio.run(main)


def test_a_swap_back_and_forth_keeps_the_bookkeeping_bounded() -> None:
    async def main() -> None:
        vfs = Vfs(Tree(_entries(C1)), Backend(), mtime_ns=1)
        listings = {"c1": {e.path: e for e in _entries(C1)}, "c2": {e.path: e for e in _entries(C2)}}
        cur = "c1"
        for _ in range(10):
            nxt = "c2" if cur == "c1" else "c1"
            swap(vfs, plan(listings[cur], list(listings[nxt].values())), cur, nxt, mtime_ns=3)
            cur = nxt
        files = _walk(vfs)
        assert {p: await _read_all(vfs, await vfs.open(i, 0)) for p, i in files.items()} == C1
        live = set(files.values())                                     # no entries of dead, closed inodes
        assert set(vfs.origin) <= live and set(vfs.mtimes) <= live
    trio.run(main)


def test_a_removed_inode_the_kernel_still_knows_keeps_its_revision_until_forgotten() -> None:
    """The kernel may open a removed inode again (a dentry being invalidated): it must still read the old
    commit, not the mount's first one; once forgotten and closed its bookkeeping goes."""
    async def main() -> None:
        c2 = {e.path: e for e in _entries(C2)}
        vfs = Vfs(Tree(_entries(C1)), Backend(), mtime_ns=1)
        swap(vfs, plan({e.path: e for e in _entries(C1)}, list(c2.values())), "c1", "c2", mtime_ns=2)
        ino = _walk(vfs)["r.txt"]                          # a regular file of c2: read at c2
        vfs.looked_up(ino)
        c3 = {**c2, "r.txt": TreeEntry("r.txt", "file", 3, "0" * 40)}
        swap(vfs, plan(c2, list(c3.values())), "c2", "c3", mtime_ns=3)
        assert not vfs.tree.alive(ino) and vfs.origin[ino] == ("c2", "r.txt")
        fh = await vfs.open(ino, 0)
        assert await _read_all(vfs, fh) == C2["r.txt"]
        vfs.forget(ino, 1)
        assert ino in vfs.origin                           # still open
        vfs.release(fh)
        swap(vfs, plan(c3, list(c2.values())), "c3", "c2", mtime_ns=4)   # the next swap lets go of it
        assert ino not in vfs.origin and ino not in vfs.mtimes
    trio.run(main)
