"""The bulk commands tune glibc malloc for their own process only (xetfs.osutil.malloc): run as the program
(``main()`` reads ``sys.argv``) they do; called in-process (``main([...])``, as the tests and any embedding
program do) they leave the caller's allocator alone."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import xetfs.cli.download_cmd
import xetfs.cli.main
from xetfs.cli.main import main


def test_only_the_process_own_command_sets_malloc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(xetfs.cli.main, "reuse_large_buffers", lambda: calls.append("mallopt") or True)
    monkeypatch.setattr(xetfs.cli.download_cmd, "run", lambda args: 0)   # the command itself is not the point
    argv = ["download", "org/x", "--to", str(tmp_path)]
    assert main(argv) == 0
    assert calls == [], "an in-process call changed the caller's allocator"
    monkeypatch.setattr(sys, "argv", ["xetfs", *argv])
    assert main() == 0
    assert calls == ["mallopt"]
    (tmp_path / "a.bin").write_bytes(b"abc")
    monkeypatch.setattr(sys, "argv", ["xetfs", "hash", str(tmp_path / "a.bin")])
    assert main() == 0
    assert calls == ["mallopt"], "a command that moves no bulk data keeps glibc's defaults"
