"""The dependency direction of design.md §1: core does no I/O; server never imports fs; fs never imports server."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "xetfs"
CORE_FORBIDDEN = {"trio", "httpx", "pyfuse3", "aiohttp", "socket", "asyncio", "sqlite3", "os", "time", "random", "subprocess"}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_does_no_io() -> None:
    for path in (PKG / "core").glob("*.py"):
        bad = {n for n in imports_of(path) if n.split(".")[0] in CORE_FORBIDDEN}
        assert not bad, f"{path.name} imports {bad}"


def test_client_side_never_imports_the_server() -> None:
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).parts
        if rel[0] in ("server", "cli", "testing"):
            continue
        assert not any(n.startswith("xetfs.server") for n in imports_of(path)), path


def test_server_and_fs_stay_apart() -> None:
    for path in (PKG / "server").glob("*.py"):
        assert not any(n.startswith("xetfs.fs") for n in imports_of(path)), path
    for path in (PKG / "fs").glob("*.py"):
        assert not any(n.startswith("xetfs.server") for n in imports_of(path)), path
