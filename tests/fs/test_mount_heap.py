"""The mount daemon's heap (xetfs.osutil.malloc.daemon_env): the daemon starts with glibc's huge-page
tunable, so the memory tier fills in 2 MiB pages: far fewer page faults than one per 4 KiB page copied in."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from xetfs.testing.mount import mounted, xetfs_cli
from xetfs.testing.server import ServerHandle, make_bytes

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1 << 20
SIZE = 96 * MiB
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _thp_mode() -> str:
    """The bracketed mode of the kernel's THP setting ('always', 'madvise' or 'never'; 'never' when absent)."""
    found = re.search(r"\[(\w+)\]", THP.read_text()) if THP.exists() else None
    return found.group(1) if found else "never"


def _minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def _anon_huge_bytes(pid: int) -> int:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return int(re.search(r"^AnonHugePages:\s+(\d+) kB", text, re.M).group(1)) * 1024   # type: ignore[union-attr]


def test_the_daemon_fills_its_memory_tier_in_huge_pages(server: ServerHandle, repo: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = make_bytes("random", SIZE, seed=7)
    (src / "big.bin").write_bytes(data)
    xetfs_cli("upload", repo, str(src), "--endpoint", server.url, "--token", server.token)
    with mounted(server, repo, tmp_path / "mnt") as m:
        environ = Path(f"/proc/{m.pid}/environ").read_bytes().split(b"\0")
        tunables = [e for e in environ if e.startswith(b"GLIBC_TUNABLES=")]
        assert tunables and b"glibc.malloc.hugetlb=1" in tunables[0].split(b"=", 1)[1].split(b":"), tunables
        before = _minor_faults(m.pid)
        assert (m.path / "big.bin").read_bytes() == data
        faults = _minor_faults(m.pid) - before
        huge = _anon_huge_bytes(m.pid)
    if _thp_mode() == "never":
        pytest.skip("the kernel gives no transparent huge pages (THP 'never'): the tunable changes nothing")
    # measured: about 31,500 faults with 4 KiB pages (one per page the memory tier took in, and more), about
    # 900 with huge pages
    assert huge >= 32 * MiB, huge
    assert faults < SIZE // 4096 // 4, faults
