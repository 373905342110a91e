"""``mypy --strict`` on the package, configured in pyproject.toml ``[tool.mypy]`` (docs/architecture.md, "Layering").

Select it alone with ``pytest -m typecheck``. The cache lives in the test's tmp dir: every run is a cold check
(~5 s), so a stale ``.mypy_cache`` can never hide or invent an error.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.typecheck
@pytest.mark.timeout(120)
def test_mypy_strict_passes_on_the_package(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy_cache"), "xetfs"],
                          cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, f"mypy xetfs failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
