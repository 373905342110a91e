"""osutil.malloc: after reuse_large_buffers, xorb-sized buffers allocated and freed in a worker thread reuse
pages instead of faulting in fresh ones (counted in a fresh interpreter: minor page faults, not time)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, resource, sys, threading
from xetfs.osutil.malloc import reuse_large_buffers
on = sys.argv[1] == "on" and reuse_large_buffers()
parts = [bytes(range(256)) * 4096 for _ in range(64)]          # 64 x 1 MiB
def work():
    for _ in range(8):
        body = b"".join(parts)                                  # 64 MiB, written once, then freed
        del body
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t = threading.Thread(target=work); t.start(); t.join()
print(json.dumps({"on": on, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""
PAGES_PER_BUFFER = (64 << 20) // 4096


def _probe(mode: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_large_buffers_are_reused_not_faulted_in_again() -> None:
    off, on = _probe("off"), _probe("on")
    assert on["on"] is True
    assert isinstance(off["faults"], int) and isinstance(on["faults"], int)
    assert off["faults"] >= 6 * PAGES_PER_BUFFER, off         # glibc's default: fresh pages for each buffer
    assert on["faults"] <= 2 * PAGES_PER_BUFFER, on           # the first buffer's pages, then reused


def test_the_daemon_env_adds_huge_pages_to_the_callers_tunables() -> None:
    from xetfs.osutil.malloc import daemon_env

    env = daemon_env({"PATH": "/bin"})
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    assert env["PATH"] == "/bin" and env["MALLOC_TRIM_THRESHOLD_"] == str(256 << 20)
    assert daemon_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})["GLIBC_TUNABLES"] == \
        "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    mine = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0", "MALLOC_TOP_PAD_": "0"}
    assert daemon_env(mine)["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=0"   # the caller's choice wins
    assert daemon_env(mine)["MALLOC_TOP_PAD_"] == "0"
