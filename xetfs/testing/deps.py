"""Optional test dependencies that must not silently empty a tier: under CI a missing one fails.

``strict()`` is true when ``CI=true`` or ``XETFS_REQUIRE_FUSE=1`` is set. ``required(name)`` imports a module for a
test module (call it at module level): when the import fails it skips the module locally, and fails it under
CI, so a broken install cannot turn a whole tier of tests into skips.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def strict() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("XETFS_REQUIRE_FUSE") == "1"


def required(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if strict():
            pytest.fail(f"{name} is required under CI (CI=true or XETFS_REQUIRE_FUSE=1) but does not import: {exc}",
                        pytrace=False)
        pytest.skip(f"{name} does not import: {exc}", allow_module_level=True)
