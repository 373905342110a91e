"""The counters a running mount serves through the hidden file ``MOUNTPOINT/.xetfs-stats`` (read side)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xetfs.errors import ValidationError

STATS_NAME = ".xetfs-stats"


def read_stats(mountpoint: str | Path) -> dict[str, Any]:
    """The JSON object a mount serves; ``ValidationError`` if ``mountpoint`` is not a running xetfs mount."""
    path = Path(mountpoint) / STATS_NAME
    try:
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{mountpoint} is not a running xetfs mount ({exc})") from None
    if not isinstance(obj, dict):
        raise ValidationError(f"{path}: unexpected contents")
    return obj
