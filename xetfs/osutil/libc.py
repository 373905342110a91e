"""The C library, for the calls Python's ``os`` module lacks (``mallopt``, ``sync_file_range``)."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def libc_function(name: str, argtypes: list[Any], restype: Any = ctypes.c_int) -> Any | None:
    """The C library's function ``name`` with its argument and result types set; None where there is none
    (not glibc, or an older one)."""
    fn = getattr(_libc(), name, None)
    if fn is None:
        return None
    fn.argtypes, fn.restype = argtypes, restype
    return fn
