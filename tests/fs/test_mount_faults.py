"""A mount under faults: the server going away, a tampered xorb, bad arguments, signals (real FUSE)."""
from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

from xetfs.testing.server import make_bytes, running_server
from xetfs.osutil.process import pid_alive
from xetfs.testing.files import pread, pread_unless_eio
from xetfs.testing.mount import mounted, xetfs_cli
from xetfs.testing.sync import wait_until

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1024 * 1024


@pytest.fixture
def server(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(make_bytes("random", 24 * MiB, seed=3))
    (src / "tamper.bin").write_bytes(make_bytes("random", 3 * MiB, seed=4))
    with running_server(tmp_path / "server") as srv:
        srv.create_repo("org/faults")
        for name in ("data.bin", "tamper.bin"):   # two uploads: tamper.bin gets a xorb of its own
            xetfs_cli("upload", "org/faults", str(src / name), "--endpoint", srv.url, "--token", srv.token)
        yield srv, src


def test_server_outage_gives_eio_then_recovers(server, tmp_path: Path) -> None:
    srv, src = server
    data = (src / "data.bin").read_bytes()
    with mounted(srv, "org/faults", tmp_path / "mnt", args=["--read-timeout", "4"]) as m:
        f = m.path / "data.bin"
        assert pread(f, 0, 4096) == data[:4096]
        srv.stop()
        with pytest.raises(OSError) as info:
            pread(f, 20 * MiB, 4096)
        assert info.value.errno == errno.EIO
        assert os.path.ismount(m.path) and os.stat(f).st_size == len(data)
        assert pread(f, 0, 4096) == data[:4096]          # what was read stays readable
        srv.start()   # the mount is degraded now: it reconnects by itself (docs/architecture.md, "Offline mode")
        assert wait_until(lambda: pread_unless_eio(f, 20 * MiB, 4096), "the mount to reconnect") == \
            data[20 * MiB:20 * MiB + 4096]
        assert m.stats()["read_errors"] >= 1


def test_tampered_xorb_is_never_returned(server, tmp_path: Path) -> None:
    srv, src = server
    xorbs = sorted((srv.data_dir / "objects" / "xorbs").rglob("*"), key=lambda p: p.stat().st_mtime)
    victim = [p for p in xorbs if p.is_file()][-1]                 # tamper.bin's xorb (uploaded last)
    raw = bytearray(victim.read_bytes())
    assert len(raw) > 2 * MiB
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with mounted(srv, "org/faults", tmp_path / "mnt") as m:
        with pytest.raises(OSError) as info:
            (m.path / "tamper.bin").read_bytes()
        assert info.value.errno == errno.EIO
        stats = m.stats()
        assert stats["integrity_failures"] >= 1
        assert (m.path / "data.bin").read_bytes() == (src / "data.bin").read_bytes()   # the mount lives on
        assert "integrity failure" in m.logs()


def test_sigterm_unmounts_cleanly(server, tmp_path: Path) -> None:
    srv, _ = server
    with mounted(srv, "org/faults", tmp_path / "mnt") as m:
        os.kill(m.pid, signal.SIGTERM)
        wait_until(lambda: not os.path.ismount(m.path), "the mount to go away")
        wait_until(lambda: not pid_alive(m.pid), "the daemon to exit")


@pytest.mark.parametrize("case", ["missing", "not_empty", "no_repo", "no_revision", "bad_token"])
def test_preconditions_fail_fast_with_one_line(server, tmp_path: Path, case: str) -> None:
    srv, _ = server
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    repo, extra, token = "org/faults", [], srv.token
    if case == "missing":
        mnt = tmp_path / "nowhere"
    elif case == "not_empty":
        (mnt / "file").write_text("x")
    elif case == "no_repo":
        repo = "org/absent"
    elif case == "no_revision":
        extra = ["--revision", "no-such-branch"]
    elif case == "bad_token":
        token = "not-a-token"
    done = xetfs_cli("mount", repo, str(mnt), "--endpoint", srv.url, "--cache-dir", str(tmp_path / "c"), *extra,
                     env={"XETFS_TOKEN": token}, check=False, timeout_s=120)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xetfs: error:"), done.stderr
    assert not os.path.ismount(mnt)


def test_umount_of_something_not_mounted_fails(tmp_path: Path) -> None:
    done = xetfs_cli("umount", str(tmp_path), check=False)
    assert done.returncode == 1 and "not mounted" in done.stderr
