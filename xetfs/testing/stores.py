"""A running ``xetfs serve`` with its object store opened beside it (for tests that damage stored objects)."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field

from xetfs.server.stores.base import Storage
from xetfs.testing.server import ServerHandle


@dataclass
class StoreServer:
    """A running server, its object store opened beside it, and the flags that name that store."""

    srv: ServerHandle
    storage: Storage
    store_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def xetfs(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the ``xetfs`` CLI with this server's store flags appended."""
        return subprocess.run([sys.executable, "-m", "xetfs.cli.main", *args, *self.store_args],
                              env={**os.environ, **self.env}, capture_output=True, text=True, timeout=120)
