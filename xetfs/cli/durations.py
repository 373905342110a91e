"""Arguments shared by commands, not a command: sizes (``--cache-size``, ``xetfs cache prune --max-size``:
``512M``, ``10G`` -> bytes), durations (``xetfs gc --grace``, ``xetfs serve --gc-interval``, ``xetfs cache prune
--older-than``: ``0``, ``90s``, ``30m``, ``24h``, ``7d`` -> seconds) and history retention (``--keep-history
N|all`` -> N, or None for all)."""
from __future__ import annotations

import argparse
import re

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def size(text: str) -> int:
    """``10G`` -> 10 * 2**30; plain numbers are bytes."""
    m = _SIZE.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 10G)")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


def duration(text: str) -> float:
    m = _DURATION.match(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 0, 90s, 30m, 24h, 7d)")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def history(text: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a number of commits (1 or more) or 'all', not {text!r}")
    return int(text)
