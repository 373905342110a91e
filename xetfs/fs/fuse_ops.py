"""pyfuse3 adapter: unpack kernel requests, call ``Vfs``, reply (docs/architecture.md, "A read").

Nothing else lives here. Errors are translated once, in ``_translated``: ``XetError`` -> ``FUSEError(errno)``;
anything unexpected -> EIO, logged once with its traceback, so one bad read never takes the mount down.
A read refused because the mount is offline (``ServerOffline``) is logged at debug level only: the switch to
offline was logged once (``xetfs.fs.offline``).

An inode's content never changes (a writable mount changes it in its own handlers and returns fresh
attributes; a followed branch gives a changed file a new inode, ``xetfs.fs.follow``), so entries and
attributes get long kernel timeouts and unmodified files ``keep_cache``: re-reads come from the page cache.
The only invalidation is ``invalidate_entries``: the directory entries a new head changed, once per head move
(never per read: invalidation storms are a known failure of other FUSE mounts). Files with staged (local)
data are opened without ``keep_cache``. ``direct_io`` is only used for the hidden stats file (its size is
unknown up front); regular files go through the page cache so shared mmap works.
"""
from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from xetfs.errors import XetError
from xetfs.fs.vfs import Attr, Vfs
from xetfs.transport.reachability import ServerOffline

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
TIMEOUT_S = 24 * 3600.0
BLOCK_BYTES = 512


def _translated(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):   # the staging disk is full: say so
                log.exception("%s failed unexpectedly", fn.__name__)
                raise pyfuse3.FUSEError(errno.EIO) from None
            log.warning("%s: %s", fn.__name__, exc)
            raise pyfuse3.FUSEError(errno.ENOSPC) from None
        except XetError as exc:
            quiet = exc.errno == errno.ENOENT or isinstance(exc, ServerOffline)
            log.log(logging.DEBUG if quiet else logging.WARNING,
                    "%s: %s: %s", fn.__name__, type(exc).__name__, exc)
            raise pyfuse3.FUSEError(exc.errno) from None
        except Exception:
            log.exception("%s failed unexpectedly", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None
    return wrapper


def entry_attributes(a: Attr) -> pyfuse3.EntryAttributes:
    e = pyfuse3.EntryAttributes()
    e.st_ino = a.inode
    e.generation = 0
    e.entry_timeout = TIMEOUT_S
    e.attr_timeout = TIMEOUT_S
    e.st_mode = a.mode
    e.st_nlink = a.nlink
    e.st_uid = os.getuid()
    e.st_gid = os.getgid()
    e.st_size = a.size
    e.st_blksize = 1 << 20
    e.st_blocks = (a.size + BLOCK_BYTES - 1) // BLOCK_BYTES
    e.st_atime_ns = e.st_mtime_ns = e.st_ctime_ns = a.mtime_ns
    return e


class FuseOps(pyfuse3.Operations):
    def __init__(self, vfs: Vfs, writeback_cache: bool = False) -> None:
        super().__init__()
        self.vfs = vfs
        # pyfuse3 asks the kernel for FUSE_CAP_WRITEBACK_CACHE when this is set (docs/architecture.md,
        # "Kernel writeback cache")
        self.enable_writeback_cache = writeback_cache

    @_translated
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> pyfuse3.EntryAttributes:
        return self._entry(self.vfs.lookup(parent_inode, os.fsdecode(name)))

    def _entry(self, a: Attr) -> pyfuse3.EntryAttributes:
        """An entry the kernel now knows (its lookup count grows by one: ``Vfs.looked_up``)."""
        self.vfs.looked_up(a.inode)
        return entry_attributes(a)

    async def forget(self, inode_list: Any) -> None:
        for inode, nlookup in inode_list:
            self.vfs.forget(inode, nlookup)

    @_translated
    async def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        return entry_attributes(self.vfs.getattr(inode))

    @_translated
    async def opendir(self, inode: int, ctx: Any) -> int:
        self.vfs.readdir(inode, 0)   # ENOTDIR / ENOENT now rather than at the first readdir
        return inode

    @_translated
    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        for name, attr, next_id in self.vfs.readdir(fh, start_id):
            if not pyfuse3.readdir_reply(token, os.fsencode(name), entry_attributes(attr), next_id):
                break
            self.vfs.looked_up(attr.inode)   # (readdirplus: the kernel counts a lookup per entry)

    def _file_info(self, fh: int) -> pyfuse3.FileInfo:
        stats = self.vfs.is_stats(fh)
        return pyfuse3.FileInfo(fh=fh, keep_cache=self.vfs.keep_cache(fh), direct_io=stats)

    @_translated
    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        return self._file_info(await self.vfs.open(inode, flags))

    @_translated
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return await self.vfs.read(fh, off, size)

    @_translated
    async def release(self, fh: int) -> None:
        await self.vfs.close(fh)

    # -- writes (a read-only Vfs raises ReadOnly -> EROFS)
    @_translated
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: Any) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        fh, attr = await self.vfs.create(parent_inode, os.fsdecode(name), mode, flags)
        return self._file_info(fh), self._entry(attr)

    @_translated
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return await self.vfs.write(fh, off, buf)

    @_translated
    async def flush(self, fh: int) -> None:
        await self.vfs.flush(fh)

    @_translated
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.vfs.fsync(fh)

    @_translated
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
                      fh: int | None, ctx: Any) -> pyfuse3.EntryAttributes:
        return entry_attributes(await self.vfs.setattr(
            inode, size=attr.st_size if fields.update_size else None,
            mode=attr.st_mode if fields.update_mode else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None))

    @_translated
    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Any) -> pyfuse3.EntryAttributes:
        return self._entry(await self.vfs.mkdir(parent_inode, os.fsdecode(name), mode))

    @_translated
    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        await self.vfs.unlink(parent_inode, os.fsdecode(name))

    @_translated
    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        await self.vfs.rmdir(parent_inode, os.fsdecode(name))

    @_translated
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int, name_new: bytes,
                     flags: int, ctx: Any) -> None:
        await self.vfs.rename(parent_inode_old, os.fsdecode(name_old), parent_inode_new, os.fsdecode(name_new),
                              flags)

    @_translated
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        return None   # directory changes are journaled when they happen

    @_translated
    async def statfs(self, ctx: Any) -> pyfuse3.StatvfsData:
        s = self.vfs.statfs()
        st = pyfuse3.StatvfsData()
        st.f_bsize = st.f_frsize = BLOCK_BYTES
        st.f_blocks = (s["bytes"] + BLOCK_BYTES - 1) // BLOCK_BYTES
        st.f_bfree = st.f_bavail = s.get("free_bytes", 0) // BLOCK_BYTES
        st.f_files = s["files"]
        st.f_ffree = st.f_favail = 0
        st.f_namemax = 255
        return st


def invalidate_entries(dentries: list[tuple[int, str, int]]) -> None:
    """Make the kernel forget ``(parent inode, name, inode or 0)`` entries. Blocking: call it from a worker
    thread, never from a request handler (pyfuse3's rule). An entry the kernel never looked up is fine."""
    for parent, name, ino in dentries:
        try:
            pyfuse3.invalidate_entry(parent, os.fsencode(name), deleted=ino)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                log.warning("cannot invalidate the kernel entry %s in inode %d: %s", name, parent, exc)
