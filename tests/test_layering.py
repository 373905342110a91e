"""The layering rules of docs/architecture.md, "Layering", checked on the import graph of the package.

Every ``import`` counts, wherever it sits: at module level, inside a function, under ``TYPE_CHECKING``.
Stages depend in one direction only::

    core <- protocol <- transport <- client <- read, write <- fs <- cli
    core, protocol, transport <- server

``errors`` and ``osutil`` are importable by every stage that does I/O; ``testing`` may import anything;
nothing in the product imports ``testing``. There is no cycle between packages or between modules, and the
``cli`` command modules are imported by no module (shared pieces live in the library, or in a cli helper
module such as ``cli/progress.py``).
"""
from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "xetfs"
CORE_FORBIDDEN = {"trio", "httpx", "pyfuse3", "aiohttp", "socket", "asyncio", "sqlite3", "os", "time", "random", "subprocess"}

_IO_COMMON = {"errors", "osutil"}
# package -> the xetfs packages it may import (its own modules are always allowed). "" is xetfs/__init__.py.
ALLOWED: dict[str, set[str]] = {
    "": set(),
    "errors": set(),
    "osutil": {"errors"},
    "core": {"errors"},                                   # sans-IO: not even osutil
    "protocol": {"core", "errors"},                       # sans-IO wire shapes
    "transport": {"core", "protocol"} | _IO_COMMON,
    "client": {"core", "protocol", "transport"} | _IO_COMMON,
    "read": {"core", "protocol", "transport", "client"} | _IO_COMMON,
    "write": {"core", "protocol", "transport", "client"} | _IO_COMMON,
    "fs": {"core", "protocol", "transport", "client", "read", "write"} | _IO_COMMON,
    "cli": {"core", "protocol", "transport", "client", "read", "write", "fs", "server"} | _IO_COMMON,
    "server": {"core", "protocol", "transport"} | _IO_COMMON,
    "testing": {"", "errors", "osutil", "core", "protocol", "transport", "client", "read", "write", "fs", "cli",
                "server"},
}

# Known violations in areas being restructured by their owners, who empty this list (an entry that no longer
# occurs fails the test, so the list can only shrink). Each entry is one (importer, imported) module edge.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def xetfs_imports(path: Path, modules: Iterable[str]) -> dict[str, int]:
    """The xetfs modules ``path`` imports (relative imports resolved) -> the first line importing each."""
    known = set(modules)
    me = module_name(path) if path.is_relative_to(PKG) else ""
    base_parts = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base_parts[:len(base_parts) - (node.level - 1)]
                mod = ".".join(parts + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from xetfs.transport import http`` imports the module xetfs.transport.http
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        for target in targets:
            if target.split(".")[0] != "xetfs":
                continue
            while target not in known and "." in target:   # ``import xetfs.core.hashing.x`` -> the module
                target = target.rsplit(".", 1)[0]
            if target != me:
                found.setdefault(target, node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    paths = {module_name(p): p for p in PKG.rglob("*.py")}
    return {m: xetfs_imports(p, paths) for m, p in sorted(paths.items())}


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _edges() -> list[tuple[str, str, int]]:
    return [(src, dst, line) for src, targets in import_graph().items() for dst, line in targets.items()
            if (src, dst) not in KNOWN_VIOLATIONS]


def test_every_package_is_in_the_table() -> None:
    packages = {package_of(m) for m in import_graph()}
    assert packages == set(ALLOWED), f"packages without a layering rule: {packages ^ set(ALLOWED)}"


def test_imports_follow_the_allowed_directions() -> None:
    bad = [f"{src}:{line} imports {dst} ({package_of(src) or 'xetfs'} may not import {package_of(dst)})"
           for src, dst, line in _edges()
           if package_of(src) != package_of(dst) and package_of(dst) not in ALLOWED[package_of(src)]]
    assert not bad, "wrong-direction imports:\n" + "\n".join(bad)


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for src, dst, _ in _edges():
        if package_of(src) != package_of(dst):
            graph.setdefault(package_of(src), set()).add(package_of(dst))
    assert not cycles(graph), f"package import cycles: {cycles(graph)}"


def test_no_cycle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for src, dst, _ in _edges():
        graph.setdefault(src, set()).add(dst)
    assert not cycles(graph), f"module import cycles: {cycles(graph)}"


def test_cli_commands_do_not_import_each_other() -> None:
    """A command module (``*_cmd``, or ``main``) is imported by no module; shared cli helpers are not commands."""
    def is_command(module: str) -> bool:
        return module.endswith("_cmd") or module == "xetfs.cli.main"

    bad = [f"{src}:{line} imports {dst}" for src, dst, line in _edges() if package_of(dst) == "cli" and is_command(dst)]
    assert not bad, "cli modules importing each other (move the shared piece into the library):\n" + "\n".join(bad)


def test_known_violations_still_occur() -> None:
    """The allow-list only shrinks: an entry fixed in the code must leave the list."""
    graph = import_graph()
    stale = sorted(edge for edge in KNOWN_VIOLATIONS if edge[1] not in graph.get(edge[0], {}))
    assert not stale, f"fixed; remove from KNOWN_VIOLATIONS: {stale}"


def test_the_checker_sees_cycles_and_function_level_imports(tmp_path: Path) -> None:
    """The checker itself can fail: a two-module cycle through a function-level import is found."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from xetfs.transport import http\n    import xetfs.core.hashing\n")
    assert xetfs_imports(src, {"xetfs.transport", "xetfs.transport.http", "xetfs.core.hashing"}) == {
        "xetfs.transport.http": 2, "xetfs.core.hashing": 3}


def test_core_and_protocol_do_no_io() -> None:
    for path in [*(PKG / "core").glob("*.py"), *(PKG / "protocol").glob("*.py")]:
        bad = {n for n in _stdlib_and_third_party_imports(path) if n.split(".")[0] in CORE_FORBIDDEN}
        assert not bad, f"{path.relative_to(PKG)} imports {bad}"


def _stdlib_and_third_party_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names
