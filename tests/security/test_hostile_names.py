"""Class 7, client side (issue 12): ``xetfs download`` against a server whose listing carries hostile names.

The server refuses such names at commit, so the hostile commit is written straight into the server's
metadata store (what a broken or malicious server would hold); every entry still names real content.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from xetfs.server.metadata.store import Metadata
from xetfs.server.services.commits import make_commit
from xetfs.testing.files import tree_of, write_tree
from xetfs.testing.server import ServerHandle, make_bytes

GOOD = {"model.bin": make_bytes("random", 2_000_000, 7), "README.md": b"# hi\n", "sub/ok.txt": b"ok\n"}


def _hostile_names() -> list[str]:
    deep = "/".join(["d" * 200] * 21) + "/f.bin"           # every segment fine, 4200+ bytes in all
    return ["../escape.bin", "a/../../up.bin", f"/tmp/xetfs-abs-{uuid.uuid4().hex}.bin", "x" * 256 + ".bin",
            deep, "ctl\x01.bin", "nul\x00.bin", "back\\slash.bin", "line\nbreak.bin", "dot/./x.bin", "empty//x.bin"]


def _commit_hostile_tree(srv: ServerHandle, repo_id: str, names: list[str]) -> None:
    meta = Metadata(srv.data_dir / "metadata.sqlite3")
    try:
        repo = meta.repo("model", repo_id)
        assert repo is not None
        head = meta.refs(repo)["main"]
        commit = meta.commit(repo, head)
        assert commit is not None
        tree = dict(meta.tree(commit.tree))
        for i, name in enumerate(names):               # alternate Xet and regular entries
            tree[name] = tree["model.bin" if i % 2 == 0 else "README.md"]
        c = make_commit(f"model:{repo_id}", head, tree, "hostile names", "", None)
        assert meta.add_commit(repo, "main", c, tree)
    finally:
        meta.close()


def test_download_skips_hostile_names_and_fails_at_the_end(server: ServerHandle, repo: str,
                                                           cli: Callable, tmp_path: Path) -> None:  # type: ignore[type-arg]
    write_tree(tmp_path / "src", GOOD)
    assert cli("upload", repo, str(tmp_path / "src")).code == 0
    names = _hostile_names()
    _commit_hostile_tree(server, repo, names)
    work = tmp_path / "work"
    (work / "dst").mkdir(parents=True)

    result = cli("download", repo, "--to", str(work / "dst"))

    assert result.code == 1
    lines = result.err.strip().splitlines()
    warnings = [line for line in lines if line.startswith("xetfs: warning: skipping ")]
    assert len(warnings) == len(names), result.err
    assert lines[-1] == f"xetfs: error: skipped {len(names)} file(s) with unsafe names (see the warnings above)"
    assert len(lines) == len(names) + 1, "one line per skipped file, one summary line"
    assert all("\x00" not in line and "\x01" not in line for line in lines), "names are printed escaped"
    assert tree_of(work / "dst") == GOOD, "everything else is downloaded"
    assert sorted(p.name for p in work.iterdir()) == ["dst"], "nothing lands beside the destination"
    assert not Path(names[2]).exists() and not (tmp_path / "escape.bin").exists()


def test_download_of_a_clean_listing_still_exits_zero(server: ServerHandle, repo: str,
                                                      cli: Callable, tmp_path: Path) -> None:  # type: ignore[type-arg]
    write_tree(tmp_path / "src", GOOD)
    assert cli("upload", repo, str(tmp_path / "src")).code == 0
    result = cli("download", repo, "--to", str(tmp_path / "dst"), "--json")
    assert result.code == 0 and result.err == ""
    assert tree_of(tmp_path / "dst") == GOOD
