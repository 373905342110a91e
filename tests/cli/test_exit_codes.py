"""The documented exit codes of ``xetfs`` (``xetfs --help``): 0 success, 1 failure with one ``xetfs: error:`` line,
2 bad usage, 130 interrupted (SIGINT). Each is the real CLI in a subprocess against a real server."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from xetfs.testing.mount import xetfs_cli
from xetfs.testing.proxy import GatedProxy
from xetfs.testing.server import ServerHandle, make_bytes

MiB = 1024 * 1024


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xetfs: error: "), stderr
    return lines[0]


def test_success_is_0(server: ServerHandle, repo: str, tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(make_bytes("random", 100_000, 1))
    env = {"XETFS_ENDPOINT": server.url, "XETFS_TOKEN": server.token}
    assert xetfs_cli("hash", str(src), check=False).returncode == 0
    assert xetfs_cli("upload", repo, str(src), env=env, check=False).returncode == 0
    done = xetfs_cli("download", repo, "--to", str(tmp_path / "out"), env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "a.bin").read_bytes() == src.read_bytes()


def test_failure_is_1_with_one_line(server: ServerHandle, tmp_path: Path) -> None:
    env = {"XETFS_ENDPOINT": server.url, "XETFS_TOKEN": server.token}
    done = xetfs_cli("download", "org/no-such-repo", "--to", str(tmp_path / "out"), env=env, check=False)
    assert done.returncode == 1
    assert "org/no-such-repo" in one_error_line(done.stderr)
    done = xetfs_cli("hash", str(tmp_path / "missing.bin"), check=False)
    assert done.returncode == 1
    one_error_line(done.stderr)
    done = xetfs_cli("download", "org/x", "--to", str(tmp_path / "o2"), env={**env, "XETFS_TOKEN": "wrong"},
                     check=False)
    assert done.returncode == 1
    one_error_line(done.stderr)


def test_bad_usage_is_2(tmp_path: Path) -> None:
    mount = ["mount", "org/x", str(tmp_path)]
    for argv in (["no-such-command"], ["download", "org/x"], ["mount"], [*mount, "--cache-size", "lots"], [],
                 [*mount, "--read-only", "--writeback-cache"]):
        done = xetfs_cli(*argv, check=False)
        assert done.returncode == 2, (argv, done.stderr)
        assert "usage: xetfs" in done.stderr and "Traceback" not in done.stderr, done.stderr


# The download starts as from a terminal, where SIGINT raises KeyboardInterrupt. An ignored SIGINT is inherited
# (a shell ignores it in a background job, ``cmd &`` in a script, so pytest started that way passes it to every
# child), and Python keeps it ignored, rightly: the download would never see the signal. So the child sets
# Python's own handler before the CLI starts.
FOREGROUND_CLI = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                  "runpy.run_module('xetfs.cli.main', run_name='__main__', alter_sys=True)")


def test_sigint_is_130(server: ServerHandle, repo: str, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(make_bytes("random", 32 * MiB, 2))
    xetfs_cli("upload", repo, str(src), env={"XETFS_ENDPOINT": server.url, "XETFS_TOKEN": server.token})
    with GatedProxy(server.port, hold_down=4 * MiB) as gate:    # the download stops after 4 of its 32 MiB
        proc = subprocess.Popen([sys.executable, "-c", FOREGROUND_CLI, "download", repo, "--to",
                                 str(tmp_path / "out"), "--endpoint", gate.url], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "XETFS_TOKEN": server.token})
        try:
            gate.wait_held()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert not (tmp_path / "out" / "big.bin").exists(), "an interrupted download leaves no partial file"
