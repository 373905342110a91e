"""Reuse large freed buffers instead of mapping fresh pages for each one (docs/architecture.md, "Performance").

glibc serves an allocation over its mmap threshold (dynamic, at most 32 MiB) with a new mapping and unmaps it
when freed, and a worker thread allocates from an arena of its own that cannot hold a 64 MiB block at all. So
every xorb-sized buffer (a request body joined, a xorb packed, a block of FUSE writes kept for the chunker)
costs a page fault and a zeroed page per 4 KiB before its bytes are copied in: measured at about 16% of the
server's CPU while it took an upload, and as much again in the mount. The commands that move bulk data
therefore ask glibc, once at start, to serve blocks up to ``MMAP_THRESHOLD_BYTES`` from the heap, to keep up to
``KEEP_FREE_BYTES`` of freed memory at its top for the next ones, and to use one arena for every thread.
Memory stays bounded: at most ``KEEP_FREE_BYTES`` more than the buffers in use. Elsewhere (not glibc) this
does nothing.

The mount daemon also gets ``daemon_env``: glibc settings that only its environment at start can give. Its
memory tier grows to its bound in fresh pages once, and with 4 KiB pages that costs a fault per page, taken
while a chunk is copied in (about 135,000 faults per GiB read by a fresh mount). ``glibc.malloc.hugetlb=1``
makes malloc ask for transparent huge pages (``madvise``) on its heap, so the same memory comes in 2 MiB
pages. Where the kernel gives none (THP ``never``) nothing changes.
"""
from __future__ import annotations

import ctypes
import logging
from collections.abc import Mapping

from xetfs.osutil.libc import libc_function

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8   # mallopt(3) parameters
MMAP_THRESHOLD_BYTES = 128 << 20
KEEP_FREE_BYTES = 256 << 20
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
# Read by glibc at start, before any mallopt: keep freed memory, and grow the heap in steps of 64 MiB.
MALLOC_START_ENV = {"MALLOC_TRIM_THRESHOLD_": str(KEEP_FREE_BYTES), "MALLOC_TOP_PAD_": str(64 << 20)}


def daemon_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` for the mount daemon: ``MALLOC_START_ENV`` (where ``environ`` does not set them) and huge
    pages for malloc's heap, added to the ``GLIBC_TUNABLES`` the caller set (a ``hugetlb`` it set wins)."""
    env = {**MALLOC_START_ENV, **environ}
    tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
    if not any(t.startswith("glibc.malloc.hugetlb=") for t in tunables):
        env["GLIBC_TUNABLES"] = ":".join([*tunables, HUGE_PAGES_TUNABLE])
    return env


def reuse_large_buffers() -> bool:
    """Set the three ``mallopt`` parameters of the module docstring; False where there is no glibc ``mallopt``.
    Call it before the process starts threads (an arena a thread already has is kept)."""
    return set_malloc(MMAP_THRESHOLD_BYTES, KEEP_FREE_BYTES)


def set_malloc(mmap_threshold_bytes: int, trim_threshold_bytes: int) -> bool:
    """glibc's mmap threshold and trim threshold, and one arena for every thread; False where there is no glibc
    ``mallopt`` or it refused a setting."""
    mallopt = libc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    done = all(mallopt(param, value) == 1 for param, value in ((M_MMAP_THRESHOLD, mmap_threshold_bytes),
                                                                (M_TRIM_THRESHOLD, trim_threshold_bytes),
                                                                (M_ARENA_MAX, 1)))
    if not done:
        log.debug("mallopt refused a setting; large buffers keep glibc's defaults")
    return done
