"""The embedded object store: objects as files under ``DIR/objects`` (contract: ``stores.base``).

``put_if_absent`` writes a temp file in the target directory, fsyncs it, hard-links it to the final name
(atomic create-if-absent) and fsyncs the directory, so a crash (even SIGKILL mid-write) leaves either the
whole object or nothing but a temp file, which ``cleanup_temp()`` removes at start-up. ``path_for`` names the
file, so the data route serves it with ``sendfile``. A full disk is ``NoSpace`` (HTTP 507, ``no_space``).
"""
from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from xetfs.errors import NoSpace, NotFound, ValidationError
from xetfs.osutil.atomic import TMP_SUFFIX, fsync_dir, temp_path_for
from xetfs.server.stores.base import check_key

log = logging.getLogger(__name__)

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def no_space(exc: OSError) -> NoSpace:
    """The 507 every server write answers when its disk is full."""
    return NoSpace(f"the server is out of disk space ({os.strerror(exc.errno or errno.ENOSPC)}); "
                   "ask its operator to free space")


class LocalStorage:
    """Objects as files under ``root``; atomic writes (temp + fsync + rename + directory fsync)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        tmp = temp_path_for(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)     # atomic create-if-absent: a concurrent writer of the same key loses
            except FileExistsError:
                return False
            fsync_dir(path.parent)
        except OSError as exc:
            raise no_space(exc) if exc.errno in NO_SPACE_ERRNOS else exc
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no object {key}") from None

    def get_range(self, key: str, start: int, end_incl: int) -> bytes:
        if start < 0 or end_incl < start:
            raise ValidationError(f"bad range {start}-{end_incl}")
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                return f.read(end_incl - start + 1)
        except FileNotFoundError:
            raise NotFound(f"no object {key}") from None

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"no object {key}") from None

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except ValidationError:
            return False

    def path_for(self, key: str) -> Path | None:
        return self._path(key)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def cleanup_temp(self) -> int:
        """Remove temp files left by a crash mid-write; returns how many."""
        n = 0
        for tmp in self.root.rglob(f".*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
            n += 1
        if n:
            log.info("removed %d temp files left by an interrupted write", n)
        return n
