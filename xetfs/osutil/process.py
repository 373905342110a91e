"""Process liveness, for lock files, daemons and test services."""
from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie (signal 0 probes without sending anything).

    A zombie has exited and only waits for its parent to reap it: it holds no files, locks or mounts.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True          # exists, owned by someone else
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True          # no procfs: existence is all we know
