"""The VFS model without FUSE: a dict of paths -> bytes is the reference (docs/architecture.md, "Tests")."""
from __future__ import annotations

import errno
import json
import os
import struct

import pytest
import trio

from xetfs.core.hashing import MerkleHash
from xetfs.read.formats import parse_safetensors_header
from xetfs.errors import NotFound, ReadOnly, XetError
from xetfs.fs.vfs import ROOT_INODE, STATS_NAME, Entry, Tree, Vfs
from xetfs.testing.readers import Unstreamed

FILES = {
    "README.md": b"hello\n",
    "empty.bin": b"",
    "a/b/c/deep.txt": b"deep" * 1000,
    "a/weights.bin": bytes(range(256)) * 300,
    "a/b/other.txt": b"x",
}
XET = {"a/weights.bin", "a/b/c/deep.txt"}


class DictReader(Unstreamed):
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.calls: list[tuple[int, int, int | None]] = []

    async def read(self, offset: int, size: int, *, fetch_end: int | None = None) -> bytes:
        self.calls.append((offset, size, fetch_end))
        return self.data[offset:offset + size]


class DictBackend:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.by_hash = {MerkleHash(bytes([i + 1]) * 32): p for i, p in enumerate(sorted(files))}
        self.files = files
        self.readers: list[DictReader] = []

    def hash_of(self, path: str) -> MerkleHash:
        return next(h for h, p in self.by_hash.items() if p == path)

    def reader(self, xet_hash: MerkleHash, size: int) -> DictReader:
        r = DictReader(self.files[self.by_hash[xet_hash]])
        self.readers.append(r)
        return r

    async def read_regular(self, path: str, file_size: int, offset: int, size: int) -> bytes:
        assert file_size == len(self.files[path])
        return self.files[path][offset:offset + size]


def make_vfs(files: dict[str, bytes] = FILES, xet: set[str] = XET) -> tuple[Vfs, DictBackend]:
    backend = DictBackend(files)
    entries = [Entry(p, "file", len(d), backend.hash_of(p) if p in xet else None) for p, d in files.items()]
    entries.append(Entry("a/b", "directory", 0))
    return Vfs(Tree(entries), backend, mtime_ns=123, stats=lambda: {"pid": os.getpid()}), backend


def walk(vfs: Vfs, ino: int = ROOT_INODE, prefix: str = "") -> dict[str, int]:
    out = {}
    for name, attr, _ in vfs.readdir(ino, 0):
        path = prefix + name
        if attr.is_dir:
            out.update(walk(vfs, attr.inode, path + "/"))
        else:
            out[path] = attr.inode
    return out


def read_all(vfs: Vfs, ino: int, block: int = 1000) -> bytes:
    async def go() -> bytes:
        fh = await vfs.open(ino, os.O_RDONLY)
        parts, off = [], 0
        while True:
            data = await vfs.read(fh, off, block)
            if not data:
                break
            parts.append(data)
            off += len(data)
        vfs.release(fh)
        return b"".join(parts)
    return trio.run(go)


def test_tree_matches_the_model() -> None:
    vfs, _ = make_vfs()
    inodes = walk(vfs)
    assert set(inodes) == set(FILES)
    for path, ino in inodes.items():
        attr = vfs.getattr(ino)
        assert attr.size == len(FILES[path]) and attr.mtime_ns == 123 and not attr.is_dir
        assert read_all(vfs, ino) == FILES[path]
    assert len(set(inodes.values())) == len(inodes)


def test_lookup_paths_and_errors() -> None:
    vfs, _ = make_vfs()
    a = vfs.lookup(ROOT_INODE, "a")
    assert a.is_dir and a.mode & 0o777 == 0o555
    b = vfs.lookup(a.inode, "b")
    assert vfs.lookup(b.inode, "..").inode == a.inode and vfs.lookup(a.inode, "..").inode == ROOT_INODE
    assert vfs.lookup(ROOT_INODE, "..").inode == ROOT_INODE and vfs.lookup(b.inode, ".").inode == b.inode
    assert vfs.lookup(b.inode, "other.txt").size == 1
    with pytest.raises(NotFound) as info:
        vfs.lookup(ROOT_INODE, "missing")
    assert info.value.errno == errno.ENOENT
    with pytest.raises(XetError) as info2:
        vfs.readdir(vfs.lookup(ROOT_INODE, "README.md").inode, 0)
    assert info2.value.errno == errno.ENOTDIR
    with pytest.raises(NotFound):
        vfs.getattr(10_000)


def test_readdir_resumes_from_an_offset() -> None:
    vfs, _ = make_vfs()
    full = vfs.readdir(ROOT_INODE, 0)
    assert [n for n, _, _ in full] == sorted(["README.md", "a", "empty.bin"])
    assert vfs.readdir(ROOT_INODE, full[0][2]) == full[1:]
    assert STATS_NAME not in [n for n, _, _ in full]


def test_writes_are_refused() -> None:
    vfs, _ = make_vfs()
    ino = vfs.lookup(ROOT_INODE, "README.md").inode
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
        with pytest.raises(ReadOnly) as info:
            trio.run(vfs.open, ino, flags)
        assert info.value.errno == errno.EROFS


def test_reads_past_eof_and_ranges() -> None:
    vfs, _ = make_vfs()
    ino = walk(vfs)["a/weights.bin"]

    async def go() -> None:
        fh = await vfs.open(ino, os.O_RDONLY)
        data = FILES["a/weights.bin"]
        for off, n in [(0, 1), (5, 1000), (len(data) - 3, 100), (len(data), 10), (len(data) + 5, 10)]:
            assert await vfs.read(fh, off, n) == data[off:off + n]
        vfs.release(fh)
    trio.run(go)


def test_one_reader_per_inode_is_shared_and_kept() -> None:
    vfs, backend = make_vfs()
    ino = walk(vfs)["a/weights.bin"]

    async def go() -> None:
        fh1 = await vfs.open(ino, os.O_RDONLY)
        fh2 = await vfs.open(ino, os.O_RDONLY)
        vfs.release(fh1)
        vfs.release(fh2)
        fh3 = await vfs.open(ino, os.O_RDONLY)
        vfs.release(fh3)
    trio.run(go)
    assert len(backend.readers) == 1
    assert vfs.open_handles == 0


def test_stats_file_is_hidden_but_readable() -> None:
    vfs, _ = make_vfs()
    attr = vfs.lookup(ROOT_INODE, STATS_NAME)

    async def go() -> bytes:
        fh = await vfs.open(attr.inode, os.O_RDONLY)
        assert vfs.is_stats(fh)
        return await vfs.read(fh, 0, 1 << 20)
    assert json.loads(trio.run(go)) == {"pid": os.getpid()}


def safetensors_bytes(tensors: dict[str, int]) -> bytes:
    header, offset = {}, 0
    for name, n in tensors.items():
        header[name] = {"dtype": "U8", "shape": [n], "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


def test_safetensors_header_steers_readahead() -> None:
    data = safetensors_bytes({"a": 1000, "b": 3 << 20})
    files = {"m.safetensors": data}
    vfs, backend = make_vfs(files, set(files))
    ino = walk(vfs)["m.safetensors"]
    base = parse_safetensors_header(data)[0]  # type: ignore[index]

    async def go() -> None:
        fh = await vfs.open(ino, os.O_RDONLY)
        await vfs.read(fh, base + 1000, 1 << 20)    # the first MiB of tensor b
        vfs.release(fh)
    trio.run(go)
    assert backend.readers[0].calls[-1] == (base + 1000, 1 << 20, base + 1000 + (3 << 20))
