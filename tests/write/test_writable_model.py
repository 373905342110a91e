"""WritableVfs + Staging + Writeback without FUSE, against a real ``xetfs serve`` (docs/architecture.md, "Tests").

- A Hypothesis state machine drives ``WritableVfs`` the way the kernel would (create, open with and without
  O_TRUNC, write at any offset, read, truncate, rename of files and directories, unlink, mkdir, rmdir,
  flush/fsync/release), interleaved with writeback commits and "crashes" (the staging area is closed without
  a goodbye and replayed by a new mount). A dict of paths -> nodes is the reference: every step the VFS
  listing must match it; every read must return the model's bytes; after ``settle`` the branch head must hold
  exactly the model's files.
- The writeback's failure handling: a change the Hub refuses for good is isolated (the rest is committed),
  journaled as failed, and tried again after a new save; a crash between a commit and its journal lines
  commits nothing twice and reports no false conflict.

Base file bytes come from the real server through the Hub's resolve route (server-side reconstruction), so
these tests do not depend on the read path's ``FileReader`` (tested on its own). One trio loop runs in a
thread for the whole module (``Portal``): sync Hypothesis rules call into it.
"""
from __future__ import annotations

import errno
import functools
import itertools
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from xetfs.transport.http import make_http_client
from xetfs.client.config import RepoRef
from xetfs.core.hashing import MerkleHash
from xetfs.errors import XetError
from xetfs.write.staging import Staging
from xetfs.write.stream import STREAM_MIN_BYTES
from xetfs.fs.vfs import ROOT_INODE
from xetfs.fs.writable import WritableVfs
from xetfs.client.hub import HubClient
from xetfs.protocol.hub import Delete, TreeEntry
from xetfs.testing.server import running_server
from xetfs.write.upload import upload_files
from xetfs.write.journal import Done, Record
from xetfs.write.shardcache import ShardCache
from xetfs.write.writeback import Writeback
from xetfs.testing.readers import Unstreamed

T = TypeVar("T")
COMMITS = "xetfs_hub_commits_total"


# ---------------------------------------------------------------------------------------------- harness

class Portal:
    """One trio loop in a thread; ``run(async_fn, *args)`` runs a coroutine in it from sync code."""

    def __init__(self) -> None:
        ready = threading.Event()
        self._token: Any = None
        self._stop: trio.Event | None = None

        async def main() -> None:
            self._token, self._stop = trio.lowlevel.current_trio_token(), trio.Event()
            ready.set()
            await self._stop.wait()

        self._thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
        self._thread.start()
        ready.wait()

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def close(self) -> None:
        assert self._stop is not None
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join()


class ResolveReader(Unstreamed):
    def __init__(self, backend: "ResolveBackend", xet_hash: MerkleHash, size: int) -> None:
        self.backend, self.xet_hash, self.size = backend, xet_hash, size
        self.boundaries: list[int] | None = None

    async def read(self, offset: int, size: int, *, fetch_end: int | None = None) -> bytes:
        commit, path = self.backend.where[self.xet_hash]
        return await self.backend.read_regular_at(commit, path, self.size, offset, size)


class ResolveBackend:
    """Bytes of any committed file: ``GET /{repo}/resolve/{commit}/{path}`` with a Range (real server)."""

    def __init__(self, hub: HubClient, repo: RepoRef) -> None:
        self.hub, self.repo = hub, repo
        self.commit = ""
        self.where: dict[MerkleHash, tuple[str, str]] = {}   # Xet file hash -> a (commit, path) holding it

    def learn(self, commit: str, entries: list[TreeEntry]) -> None:
        for e in entries:
            if e.xet_hash is not None:
                self.where.setdefault(e.xet_hash, (commit, e.path))

    def reader(self, xet_hash: MerkleHash, size: int) -> ResolveReader:
        return ResolveReader(self, xet_hash, size)

    async def read_regular(self, path: str, file_size: int, offset: int, size: int) -> bytes:
        return await self.read_regular_at(self.commit, path, file_size, offset, size)

    async def read_regular_at(self, commit: str, path: str, file_size: int, offset: int, size: int) -> bytes:
        end = min(file_size, offset + size)
        return await self.hub.resolve(self.repo.at(commit), path, (offset, end)) if offset < end else b""

    async def safetensors_boundaries(self, reader: Any) -> list[int] | None:
        return None


class Rig:
    """What ``xetfs.fs.mount`` wires for a writable mount of ``repo``, minus FUSE and the background task."""

    def __init__(self, srv: Any, http: Any, repo: RepoRef, root: Path) -> None:
        self.srv, self.repo, self.root = srv, repo, root
        self.hub = HubClient(srv.url, srv.token, http)
        self.backend = ResolveBackend(self.hub, repo)
        self.staging: Staging | None = None
        self.vfs: WritableVfs
        self.wb: Writeback

    async def mount(self, staging_cls: type[Staging] = Staging) -> None:
        head = await self.learn_head()
        self.backend.commit = head
        from xetfs.fs.vfs import Tree

        self.staging = staging_cls(self.root / "staging", 1 << 30)
        self.vfs = WritableVfs(Tree(await self.hub.list_tree(self.repo.at(head))), self.backend, self.staging,
                               commit=head)
        self.vfs.apply_pending()
        base = self.staging.base_commit if self.staging.pending and self.staging.base_commit else head
        self.wb = Writeback(self.hub, self.repo, self.staging, self.vfs, base, ShardCache(self.root / "shards", 8))
        self.vfs.kick = self.wb.kick
        await self.wb.journal_base()

    def crash(self) -> None:
        """Drop the mount: no commit, no compaction (the journal is what a killed process leaves)."""
        if self.staging is not None:
            self.staging.close()
            self.staging = None

    async def learn_head(self) -> str:
        head = await self.hub.revision_sha(self.repo)
        self.backend.learn(head, await self.hub.list_tree(self.repo.at(head)))
        return head

    async def commit(self) -> None:
        await self.wb.commit_once()
        await self.learn_head()

    async def head_files(self) -> dict[str, bytes]:
        head = await self.hub.revision_sha(self.repo)
        entries = [e for e in await self.hub.list_tree(self.repo.at(head)) if e.is_file]
        return {e.path: await self.hub.resolve(self.repo.at(head), e.path) for e in entries}

    async def upload(self, files: dict[str, bytes], message: str = "seed") -> None:
        await upload_files(self.hub, self.repo, [(data, path) for path, data in files.items()], message)

    async def save(self, path: str, data: bytes) -> None:
        """open(O_RDWR|O_CREAT|O_TRUNC), write, close — as the kernel sends it."""
        parent, _, name = path.rpartition("/")
        parent_ino = self.vfs.lookup_path(parent) if parent else ROOT_INODE
        ino = self.vfs.tree.resolve(path)
        if ino is None:
            fh, _ = await self.vfs.create(parent_ino, name, 0o644, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        else:
            fh = await self.vfs.open(ino, os.O_RDWR | os.O_TRUNC)
        await self.vfs.write(fh, 0, data)
        await self.vfs.flush(fh)
        await self.vfs.close(fh)

    async def mkdirs(self, path: str) -> None:
        ino = ROOT_INODE
        for part in path.split("/"):
            child = self.vfs.tree.resolve(f"{self.vfs.tree.path(ino)}/{part}".strip("/"))
            ino = child if child is not None else (await self.vfs.mkdir(ino, part, 0o755)).inode


class Env:
    def __init__(self, srv: Any, portal: Portal, http: Any, tmp: Path) -> None:
        self.srv, self.portal, self.http, self.tmp = srv, portal, http, tmp
        self._n = itertools.count()

    def rig(self, seed: dict[str, bytes] | None = None) -> Rig:
        n = next(self._n)
        self.srv.create_repo(f"org/m{n}")
        rig = Rig(self.srv, self.http, RepoRef(f"org/m{n}"), self.tmp / f"m{n}")
        if seed:
            self.portal.run(rig.upload, seed)
        self.portal.run(rig.mount)
        return rig


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("write-model")
    portal = Portal()
    http = portal.run(_open_http)
    try:
        with running_server(tmp / "server") as srv:
            yield Env(srv, portal, http, tmp)
    finally:
        portal.run(http.aclose)
        portal.close()


async def _open_http() -> Any:
    return make_http_client()


# ----------------------------------------------------------------------------------- the state machine

NAMES = ("a", "b", "c")
PATHS = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
TARGETS = st.one_of(PATHS, st.integers(0, 999))   # an int picks an existing file or directory
DATA = st.one_of(st.binary(max_size=1500), st.text("xyz \n", max_size=1500).map(str.encode))
SEED = {"a": b"\x00seed a" * 300, "b/a": b"text of b/a\n" * 20, "b/c": b"text of b/c\n" * 50,
        "c/a/b": bytes(range(256)) * 9}


class Node:
    """A file's content; handles keep their node across renames and unlinks (like an inode)."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = bytearray(data)


class WritableModel(RuleBasedStateMachine):
    env: ClassVar[Env]

    def __init__(self) -> None:
        super().__init__()
        self.rig = self.env.rig(SEED)
        self.files = {p: Node(d) for p, d in SEED.items()}
        self.dirs = self._ancestors()
        self.handles: list[tuple[int, Node, bool]] = []   # fh, node, writable

    # -- helpers
    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self.env.portal.run(fn, *args)

    def _ancestors(self) -> set[str]:
        return {"/".join(p.split("/")[:i]) for p in self.files for i in range(len(p.split("/")))}

    def pick(self, entry: str | int) -> str:
        if isinstance(entry, str):
            return entry
        entries = sorted(self.files) + sorted(d for d in self.dirs if d)
        return entries[entry % len(entries)] if entries else "a"

    def kind(self, path: str) -> str | None:
        return "dir" if path in self.dirs else "file" if path in self.files else None

    def walk_errno(self, path: str) -> int | None:
        """What the kernel's path walk to ``path``'s parent gives (ENOENT, ENOTDIR), per the model."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            kind = self.kind("/".join(parts[:i]))
            if kind is None:
                return 2
            if kind == "file":
                return 20
        return None

    def ino(self, path: str) -> int:
        """The kernel's walk through the VFS (lookup per component)."""
        ino = ROOT_INODE
        for part in path.split("/") if path else []:
            ino = self.rig.vfs.lookup(ino, part).inode
        return ino

    def expect(self, errno: int | None, fn: Callable[..., Awaitable[T]], *args: Any) -> T | None:
        try:
            result = self.run(fn, *args)
        except XetError as exc:
            assert exc.errno == errno, f"{fn.__name__}{args}: {type(exc).__name__}({exc}) errno {exc.errno}, " \
                                       f"expected {errno}"
            return None
        assert errno is None, f"{fn.__name__}{args} succeeded, expected errno {errno}"
        return result

    def handle(self, i: int, *, writable: bool = False) -> tuple[int, Node, bool] | None:
        cands = [h for h in self.handles if h[2] or not writable]
        return cands[i % len(cands)] if cands else None

    def parent_and_name(self, path: str) -> tuple[int, str]:
        parent, _, name = path.rpartition("/")
        return self.ino(parent), name

    # -- rules
    @rule(path=PATHS, data=DATA)
    def create(self, path: str, data: bytes) -> None:
        if self.walk_errno(path) is not None or self.kind(path) is not None:
            return
        parent, name = self.parent_and_name(path)
        fh, attr = self.run(self.rig.vfs.create, parent, name, 0o644, os.O_RDWR | os.O_CREAT)
        assert attr.size == 0
        self.files[path] = Node()
        self.handles.append((fh, self.files[path], True))
        self._write(self.handles[-1], 0, data)

    @rule(entry=TARGETS, mode=st.sampled_from(["r", "r+", "w"]), offset=st.integers(0, 5000), data=DATA)
    def open(self, entry: str | int, mode: str, offset: int, data: bytes) -> None:
        path = self.pick(entry)
        if self.kind(path) != "file":
            return
        flags = {"r": os.O_RDONLY, "r+": os.O_RDWR, "w": os.O_RDWR | os.O_TRUNC}[mode]
        fh = self.run(self.rig.vfs.open, self.ino(path), flags)
        node = self.files[path]
        if mode == "w":
            node.data.clear()
        self.handles.append((fh, node, mode != "r"))
        if mode != "r":
            self._write(self.handles[-1], offset, data)

    @rule(i=st.integers(0, 20), offset=st.integers(0, 5000), data=DATA)
    def write(self, i: int, offset: int, data: bytes) -> None:
        h = self.handle(i, writable=True)
        if h is not None:
            self._write(h, offset, data)

    def _write(self, h: tuple[int, Node, bool], offset: int, data: bytes) -> None:
        fh, node, _ = h
        offset = min(offset, len(node.data) + 100)    # a small hole at most
        assert self.run(self.rig.vfs.write, fh, offset, data) == len(data)
        if data and offset > len(node.data):   # a write of nothing does not extend the file
            node.data.extend(bytes(offset - len(node.data)))
        node.data[offset:offset + len(data)] = data

    @rule(i=st.integers(0, 20), offset=st.integers(0, 5000), size=st.integers(0, 5000))
    def read(self, i: int, offset: int, size: int) -> None:
        h = self.handle(i)
        if h is None:
            return
        fh, node, _ = h
        assert self.run(self.rig.vfs.read, fh, offset, size) == bytes(node.data[offset:offset + size])

    @rule(i=st.integers(0, 20), sync=st.booleans())
    def close(self, i: int, sync: bool) -> None:
        h = self.handle(i)
        if h is None:
            return
        if sync:
            self.run(self.rig.vfs.fsync, h[0])
        self.run(self.rig.vfs.flush, h[0])
        self.run(self.rig.vfs.close, h[0])
        self.handles.remove(h)

    @rule(entry=TARGETS, size=st.integers(0, 4000))
    def truncate(self, entry: str | int, size: int) -> None:
        path = self.pick(entry)
        if self.kind(path) != "file":
            return
        attr = self.run(functools.partial(self.rig.vfs.setattr, size=size), self.ino(path))
        node = self.files[path]
        del node.data[size:]
        node.data.extend(bytes(size - len(node.data)))
        assert attr.size == size

    @rule(entry=TARGETS)
    def unlink(self, entry: str | int) -> None:
        path = self.pick(entry)
        if self.walk_errno(path) is not None:
            return
        parent, name = self.parent_and_name(path)
        kind = self.kind(path)
        self.expect({None: 2, "dir": 21, "file": None}[kind], self.rig.vfs.unlink, parent, name)
        self.files.pop(path, None)

    @rule(path=PATHS)
    def mkdir(self, path: str) -> None:
        if self.walk_errno(path) is not None:
            return
        parent, name = self.parent_and_name(path)
        if self.expect(17 if self.kind(path) else None, self.rig.vfs.mkdir, parent, name, 0o755) is not None:
            self.dirs.add(path)

    @rule(entry=TARGETS)
    def rmdir(self, entry: str | int) -> None:
        path = self.pick(entry)
        if self.walk_errno(path) is not None:
            return
        parent, name = self.parent_and_name(path)
        kind = self.kind(path)
        busy = any(p.startswith(path + "/") for p in itertools.chain(self.files, self.dirs))
        errno = {None: 2, "file": 20, "dir": 39 if busy else None}[kind]
        self.expect(errno, self.rig.vfs.rmdir, parent, name)
        if errno is None:
            self.dirs.discard(path)

    @rule(source=TARGETS, dest=TARGETS)
    def rename(self, source: str | int, dest: str | int) -> None:
        src, dst = self.pick(source), self.pick(dest)
        if self.walk_errno(src) is not None or self.walk_errno(dst) is not None:
            return
        if src == dst or src.startswith(dst + "/"):
            return   # a no-op; the kernel answers ENOTEMPTY for a target that contains the source
        (p_old, n_old), (p_new, n_new) = self.parent_and_name(src), self.parent_and_name(dst)
        errno = self._rename_errno(src, dst)
        self.expect(errno, self.rig.vfs.rename, p_old, n_old, p_new, n_new, 0)
        if errno is None:
            self._move(src, dst)

    def _rename_errno(self, src: str, dst: str) -> int | None:
        ks, kd = self.kind(src), self.kind(dst)
        if ks is None:
            return 2
        if ks == "dir" and dst.startswith(src + "/"):
            return 22
        if kd is not None and ks != kd:
            return 20 if ks == "dir" else 21
        if kd == "dir" and any(p.startswith(dst + "/") for p in itertools.chain(self.files, self.dirs)):
            return 39
        return None

    def _move(self, src: str, dst: str) -> None:
        def moved(p: str) -> str:
            return dst + p[len(src):] if p == src or p.startswith(src + "/") else p
        self.files.pop(dst, None)
        self.dirs.discard(dst)
        self.files = {moved(p): n for p, n in self.files.items()}
        self.dirs = {moved(d) for d in self.dirs}

    @rule()
    def commit(self) -> None:
        self.run(self.rig.commit)

    @rule()
    def remount(self) -> None:
        """Close every handle, then "crash" and mount again: the journal alone carries the changes."""
        self._close_all()
        self.rig.crash()
        self.run(self.rig.mount)
        self.dirs = self._ancestors()   # empty directories live only as long as the mount

    @rule()
    def settle(self) -> None:
        """Close everything and commit until nothing is pending: the branch head holds exactly the model."""
        self._close_all()
        for _ in range(4):
            if not self.rig.wb.pending_files():
                break
            self.run(self.rig.commit)
        snap = self.rig.wb.snapshot()
        assert snap["pending_files"] == 0 and not snap["conflicts"] and not snap["failed"], snap
        assert self.run(self.rig.head_files) == {p: bytes(n.data) for p, n in self.files.items()}
        self._check_reads()

    def _close_all(self) -> None:
        for fh, _, _ in self.handles:
            self.run(self.rig.vfs.flush, fh)
            self.run(self.rig.vfs.close, fh)
        self.handles.clear()

    def _check_reads(self) -> None:
        for path, node in self.files.items():
            fh = self.run(self.rig.vfs.open, self.ino(path), os.O_RDONLY)
            assert self.run(self.rig.vfs.read, fh, 0, len(node.data) + 10) == bytes(node.data), path
            self.run(self.rig.vfs.close, fh)

    @invariant()
    def listing_matches(self) -> None:
        files: dict[str, int] = {}
        dirs: set[str] = {""}

        def walk(ino: int) -> None:
            for name, attr, _ in self.rig.vfs.readdir(ino, 0):
                path = self.rig.vfs.tree.path(attr.inode)
                if attr.is_dir:
                    dirs.add(path)
                    walk(attr.inode)
                else:
                    files[path] = attr.size
        walk(ROOT_INODE)
        assert files == {p: len(n.data) for p, n in self.files.items()}
        assert dirs == self.dirs | {""}

    @invariant()
    def open_handles_read_back(self) -> None:
        for fh, node, _ in self.handles:
            assert self.run(self.rig.vfs.read, fh, 0, len(node.data) + 1) == bytes(node.data)

    def teardown(self) -> None:
        self.rig.crash()


def test_writable_vfs_matches_a_dict_model(env: Env) -> None:
    WritableModel.env = env
    run_state_machine_as_test(WritableModel, settings=settings(
        max_examples=int(os.environ.get("XETFS_MODEL_EXAMPLES", "50")), stateful_step_count=50, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


# ------------------------------------------------------------------------------------ failure handling

def test_a_refused_change_is_isolated_journaled_and_retried_after_a_new_save(env: Env) -> None:
    rig = env.rig({"keep.txt": b"kept\n"})
    run = env.portal.run
    run(rig.upload, {"clash": b"a file the mount does not know about\n"}, "another client")
    run(rig.save, "ok.txt", b"fine\n")
    run(rig.mkdirs, "clash")
    run(rig.save, "clash/f.bin", b"\x00refused: clash is a file on the branch")
    run(rig.save, "also-ok.bin", b"\x00fine too" * 100)
    run(rig.commit)
    snap = rig.wb.snapshot()
    assert list(snap["failed"]) == ["clash/f.bin"] and "both a file and a folder" in snap["failed"]["clash/f.bin"]
    assert snap["pending_files"] == 0 and not rig.wb.ready(), "a refused change is not retried by itself"
    files = run(rig.head_files)
    assert files["ok.txt"] == b"fine\n" and files["also-ok.bin"] == b"\x00fine too" * 100
    assert "clash/f.bin" not in files
    commits = env.srv.metrics()[COMMITS]
    run(rig.commit)
    assert env.srv.metrics()[COMMITS] == commits

    rig.crash()                                  # the failure is journaled, the data kept staged
    run(rig.mount)
    assert list(rig.wb.snapshot()["failed"]) == ["clash/f.bin"]
    fh = run(rig.vfs.open, rig.vfs.lookup_path("clash/f.bin"), os.O_RDONLY)
    assert run(rig.vfs.read, fh, 0, 100) == b"\x00refused: clash is a file on the branch"
    run(rig.vfs.close, fh)

    head = run(rig.hub.revision_sha, rig.repo)   # the branch drops its file; a new save is tried again
    run(functools.partial(rig.hub.commit, parent_commit=head), rig.repo, [Delete("clash")], "make room")
    run(rig.save, "clash/f.bin", b"\x00saved again")
    run(rig.commit)
    assert rig.wb.snapshot()["failed"] == {} and rig.wb.pending_files() == 0
    assert run(rig.head_files)["clash/f.bin"] == b"\x00saved again"
    rig.crash()


class _CrashBeforeDone(Staging):
    """A staging area whose process "dies" right after a commit landed, before its ``done`` lines."""

    async def persist(self, lines: list[Record | None]) -> None:
        if any(isinstance(r, Done) for r in lines):
            raise _Crash()
        await super().persist(lines)


class _Crash(BaseException):
    pass


@pytest.mark.parametrize("branch_moved", [False, True])
def test_resume_after_a_crash_between_commit_and_journal_is_idempotent(env: Env, branch_moved: bool) -> None:
    rig = env.rig({"weights.bin": b"\x00" + bytes(range(256)) * 40, "notes.txt": b"v1\n"})
    run = env.portal.run
    rig.crash()
    run(rig.mount, _CrashBeforeDone)
    run(rig.save, "notes.txt", b"v2\n")
    run(rig.save, "new.bin", b"\x00new" * 1000)
    fh = run(rig.vfs.open, rig.vfs.lookup_path("weights.bin"), os.O_RDWR)   # copy-on-write edit
    run(rig.vfs.write, fh, 100, b"edited")
    run(rig.vfs.flush, fh)
    run(rig.vfs.close, fh)
    run(rig.vfs.unlink, ROOT_INODE, "notes.txt")
    run(rig.save, "notes.txt", b"v3\n")
    with pytest.raises(_Crash):
        run(rig.commit)
    rig.crash()
    commits = env.srv.metrics()[COMMITS]
    expected = run(rig.head_files)
    assert expected["notes.txt"] == b"v3\n" and expected["weights.bin"][100:106] == b"edited"
    if branch_moved:                                  # another client commits before the next mount
        run(rig.upload, {"other.txt": b"from elsewhere\n"}, "another client")
        expected["other.txt"] = b"from elsewhere\n"
        commits += 1
    run(rig.mount)
    assert sorted(rig.staging.pending) == ["new.bin", "notes.txt", "weights.bin"]
    run(rig.commit)
    snap = rig.wb.snapshot()
    assert env.srv.metrics()[COMMITS] == commits, "no second commit of the same changes"
    assert snap["pending_files"] == 0 and snap["conflicts"] == [] and snap["already_committed"] == 3, snap
    assert run(rig.head_files) == expected
    fh = run(rig.vfs.open, rig.vfs.lookup_path("weights.bin"), os.O_RDONLY)
    assert run(rig.vfs.read, fh, 0, 1 << 20) == expected["weights.bin"]
    run(rig.vfs.close, fh)
    rig.crash()


def test_open_handles_keep_reading_files_that_were_unlinked_or_replaced(env: Env) -> None:
    """POSIX: an open file stays readable after unlink or a rename over it (regular and Xet files)."""
    seed = {"d/notes.txt": b"regular text\n", "d/w.bin": b"\x00xet" * 100, "d/over.txt": b"replaced\n"}
    rig = env.rig(seed)
    run = env.portal.run
    handles = {p: run(rig.vfs.open, rig.vfs.lookup_path(p), os.O_RDONLY) for p in seed}
    d = rig.vfs.lookup_path("d")
    run(rig.vfs.unlink, d, "notes.txt")
    run(rig.vfs.unlink, d, "w.bin")
    run(rig.save, "d/new.txt", b"new\n")
    run(rig.vfs.rename, d, "new.txt", d, "over.txt", 0)
    for path, fh in handles.items():
        assert run(rig.vfs.read, fh, 0, 1000) == seed[path], path
        run(rig.vfs.close, fh)
    rig.crash()


def test_a_flush_failing_where_a_stream_would_start_fails_no_write(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write that makes a new file long enough to upload while it is written succeeded; writing out the
    gathered bytes first (``Staging.flush``) fails on the device. That write still succeeds, no stream starts,
    and the bytes stay gathered: the close writes them out and the file is committed whole."""
    rig = env.rig()
    run = env.portal.run
    fh, attr = run(rig.vfs.create, ROOT_INODE, "big.bin", 0o644, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    sf = rig.vfs.staged[attr.inode]
    data = os.urandom(STREAM_MIN_BYTES + 4096)
    last = STREAM_MIN_BYTES - 4096
    for off in range(0, last, 4096):
        assert run(rig.vfs.write, fh, off, data[off:off + 4096]) == 4096
    rig.staging.flush(sf)
    assert sf.stream is None and not sf.stream_tried
    real, failing = rig.staging._gather.flush, [True]

    def flush(owner: object) -> None:
        if failing[0]:
            raise OSError(errno.EIO, "Input/output error")
        real(owner)

    monkeypatch.setattr(rig.staging._gather, "flush", flush)
    assert run(rig.vfs.write, fh, last, data[last:]) == len(data) - last   # gathered: written
    assert sf.stream is None and sf.stream_tried and not sf.broken
    failing[0] = False
    run(rig.vfs.flush, fh)
    run(rig.vfs.close, fh)
    run(rig.commit)
    assert run(rig.head_files) == {"big.bin": data}
