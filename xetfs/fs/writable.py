"""The writable filesystem model of a branch: staged file data (``StagedVfs``) + namespace changes +
the writeback's side (docs/architecture.md, "The write path").

- ``unlink`` and ``rename`` journal ``Del``/``Put`` records for every file they move (a renamed unmodified
  file becomes a ``Put`` of a ``remote`` reference: no data travels). Directories are implicit in the repo
  (like git): ``mkdir`` of an empty directory lives only as long as the mount, and a remount shows the branch
  with the pending changes applied (``apply_pending``: directories emptied by pending deletes are gone). An
  unlinked file stays readable through the handles that have it open (a regular file keeps its ``origin``).
- The writeback calls ``committed`` after a commit: the inode then shows the new file hash and its staged
  data is dropped once no handle uses it.
"""
from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Any

import trio

from xetfs.core.hashing import MerkleHash
from xetfs.errors import AlreadyExists, Forbidden, NotFound, XetError
from xetfs.fs.staged_vfs import Invalid, StagedVfs, WritableBackend
from xetfs.fs.vfs import ROOT_INODE, STATS_INODE, Attr, IsADirectory, NotADirectory, Tree
from xetfs.write.journal import Record, RegularRef, XetRef
from xetfs.write.staged import Change
from xetfs.write.staging import Staging
from xetfs.write.upload import XetFile

log = logging.getLogger(__name__)

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


class NotEmpty(XetError):
    errno = errno.ENOTEMPTY


class WritableVfs(StagedVfs):
    """A branch mounted writable (see the module docstring)."""

    def __init__(self, tree: Tree, backend: WritableBackend, staging: Staging, *, commit: str,
                 kick: Callable[[], None] = lambda: None, **kwargs: Any) -> None:
        super().__init__(tree, backend, staging, commit=commit, kick=kick, **kwargs)
        # Files the branch holds as far as this mount knows (the listing, then its own commits): a delete of
        # any other path (a temp file renamed over its target) changes nothing and is not counted as pending.
        self.repo_paths = {tree.path(f) for f in tree.files_under(ROOT_INODE)}

    def _child(self, parent: int, name: str) -> int:
        self.tree.check(parent)
        return self.tree.lookup(parent, name)

    async def mkdir(self, parent: int, name: str, mode: int) -> Attr:
        self.tree.check(parent)
        ino = self.tree.add_dir(parent, self._check_name(name))
        self._touch(ino, mode)
        return self.getattr(ino)

    async def rmdir(self, parent: int, name: str) -> None:
        ino = self._child(parent, name)
        if not self.tree.is_dir(ino):
            raise NotADirectory(self.tree.path(ino))
        if self.tree.children(ino):
            raise NotEmpty(self.tree.path(ino))
        self.tree.remove(ino)

    async def unlink(self, parent: int, name: str) -> None:
        ino = self._child(parent, name)
        if ino == STATS_INODE:
            raise Forbidden("the stats file cannot be removed")
        if self.tree.is_dir(ino):
            raise IsADirectory(self.tree.path(ino))
        path = self.tree.path(ino)
        line = self.staging.delete(path, in_repo=path in self.repo_paths)
        self._remove_file(ino)
        await self.staging.persist([line])
        self.kick()

    def _remove_file(self, ino: int) -> None:
        if ino not in self.staged and self.tree.xet_hash(ino) is None:   # open handles still read it
            self.origin.setdefault(ino, (self.commit, self.tree.path(ino)))
        self.tree.remove(ino)
        self.forget_reader(ino)
        sf = self.staged.get(ino)
        if sf is not None:
            sf.dirty = False    # an unlinked file is never sealed again
            self._maybe_detach(ino)

    async def rename(self, parent_old: int, name_old: str, parent_new: int, name_new: str, flags: int) -> None:
        ino = self._child(parent_old, name_old)
        self.tree.check(parent_new)
        self._check_name(name_new)
        if flags & RENAME_EXCHANGE:
            raise Invalid("RENAME_EXCHANGE is not supported")
        if ino == STATS_INODE or (parent_new == ROOT_INODE and name_new == self.tree.name(STATS_INODE)):
            raise Forbidden("the stats file cannot be renamed")
        target = self.tree._children.get((parent_new, name_new))
        if target == ino:
            return
        if self.tree.is_dir(ino) and self.tree.is_under(parent_new, ino):
            raise Invalid("cannot move a directory into itself")
        if target is not None:
            self._check_replace(ino, target, flags)
        old_paths = {f: self.tree.path(f) for f in self.tree.files_under(ino)}
        if target is not None:
            self._remove_file(target) if not self.tree.is_dir(target) else self.tree.remove(target)
        self.tree.move(ino, parent_new, name_new)
        lines: list[Record | None] = []
        for f, old in old_paths.items():
            lines.append(await self._moved(f, old, self.tree.path(f)))
            lines.append(self.staging.delete(old, in_repo=old in self.repo_paths))
        if target is not None:
            self._maybe_detach(target)   # its pending put was just replaced
        await self.staging.persist(lines)
        self.kick()

    def _check_replace(self, ino: int, target: int, flags: int) -> None:
        if flags & RENAME_NOREPLACE:
            raise AlreadyExists(self.tree.name(target))
        if self.tree.is_dir(ino) and not self.tree.is_dir(target):
            raise NotADirectory(self.tree.path(target))
        if not self.tree.is_dir(ino) and self.tree.is_dir(target):
            raise IsADirectory(self.tree.path(target))
        if self.tree.is_dir(target) and self.tree.children(target):
            raise NotEmpty(self.tree.path(target))

    async def _moved(self, ino: int, old: str, new: str) -> Record | None:
        """The ``put`` line for a file now at ``new`` (its content is unchanged by the move)."""
        sf = self.staged.get(ino)
        change = self.staging.pending.get(old)
        if sf is not None and change is not None and change.staged is sf:
            return self.staging.put(new, sf)
        if sf is not None and sf.dirty:
            return None            # being written: its next seal records it at the new path
        xet, sha256, size = self.tree.xet_hash(ino), self.tree.sha256(ino), self.tree.size(ino)
        if xet is not None and sha256:
            return self.staging.put(new, remote=XetRef(str(xet), sha256, size))
        if xet is not None:        # no sha256 known for it: upload it again (dedup makes that cheap)
            sf = sf or await self._stage(ino, truncate=False)
            self.staging.flush(sf)
            await trio.to_thread.run_sync(self.staging.sync_data, sf)
            return self.staging.put(new, sf)
        commit, path = self.origin.setdefault(ino, (self.commit, old))
        return self.staging.put(new, remote=RegularRef(commit, path, size))

    # -- the writeback's side
    def busy(self, change: Change) -> bool:
        """A staged file being written (or written since its seal, or broken by a failed write) is not
        uploaded yet."""
        sf = change.staged
        return sf is not None and (sf.writers > 0 or sf.dirty or sf.broken)

    def committed(self, path: str, change: Change, commit: str, xet_file: XetFile | None) -> None:
        """``change`` of ``path`` is in ``commit``: show the repo's copy, drop staged data nobody needs."""
        if change.kind == "del":
            self.repo_paths.discard(path)
        else:
            self.repo_paths.add(path)
        ino = self.tree.resolve(path)
        if ino is None or self.tree.is_dir(ino):
            return
        sf = self.staged.get(ino)
        if change.kind != "put" or (change.staged is not None and sf is not change.staged):
            return
        if change.staged is None and sf is not None:
            return
        if xet_file is not None:
            self.tree.set_file(ino, xet_file.size, xet_file.file_hash, xet_file.sha256)
            self.origin.pop(ino, None)
        elif change.staged is not None or isinstance(change.remote, RegularRef):
            self.tree.set_file(ino, change.size, None, None)
            self.origin[ino] = (commit, path)
        self.forget_reader(ino)
        self._maybe_detach(ino)

    def apply_pending(self) -> None:
        """At mount: show the journaled changes over the branch listing (deletes first)."""
        items = sorted(self.staging.pending.items(), key=lambda kv: kv[1].kind != "del")
        for path, change in items:
            ino = self.tree.resolve(path)
            if change.kind == "del":
                if ino is not None and not self.tree.is_dir(ino):
                    self._remove_pruning(ino)
                continue
            try:
                ino = ino if ino is not None else self._add_pending_file(path)
                if self.tree.is_dir(ino):
                    raise IsADirectory(f"the branch has a directory {path}")
            except XetError as exc:
                log.error("cannot show the pending change of %s (it stays staged): %s", path, exc)
                continue
            if change.staged is not None:
                self._attach(ino, change.staged)
            elif isinstance(change.remote, XetRef):
                r = change.remote
                self.tree.set_file(ino, r.size, MerkleHash.from_hex(r.xet), r.sha256)
            elif isinstance(change.remote, RegularRef):
                self.tree.set_file(ino, change.remote.size, None, None)
                self.origin[ino] = (change.remote.commit, change.remote.path)

    def _add_pending_file(self, path: str) -> int:
        """An inode for a pending file the branch lacks. A branch file where that path needs a directory
        is hidden from this mount: the pending change is unsaved work (the Hub refused it, or will), and
        the user must be able to see it and move it elsewhere."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            ino = self.tree.resolve("/".join(parts[:i]))
            if ino is not None and not self.tree.is_dir(ino):
                log.warning("%s is hidden in this mount: the pending change of %s needs a directory there",
                            self.tree.path(ino), path)
                self.tree.remove(ino)
        return self.tree.add_file(self.tree.mkdirs(parts[:-1]), parts[-1])

    def _remove_pruning(self, ino: int) -> None:
        """Remove a file and the directories it leaves empty: directories are implicit in a repo, so the
        mount shows what the branch will hold once the pending deletes are committed."""
        parent = self.tree.parent(ino)
        self.tree.remove(ino)
        while parent != ROOT_INODE and not self.tree.children(parent):
            ino, parent = parent, self.tree.parent(parent)
            self.tree.remove(ino)

    def lookup_path(self, path: str) -> int:
        ino = self.tree.resolve(path)
        if ino is None:
            raise NotFound(path)
        return ino
