"""The progress bar of the transfer commands (not a command: ``upload`` and ``download`` share it)."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm


def progress_bar(total: int, what: str) -> tqdm[None]:
    """A tqdm byte counter on a TTY (stderr), a disabled one otherwise."""
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=what,
                disable=not sys.stderr.isatty(), leave=False)
