"""The official hf_xet client driven against a running server: uploads and downloads of whole byte strings
through hf_xet's legacy functions and its ``XetSession``. Files are ``(xet hash, size)`` pairs.
hf_xet is imported when called (``xetfs.testing.deps.required("hf_xet")`` in the test module says whether
the tier runs)."""
from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any

from xetfs.testing.hub import xet_token
from xetfs.testing.server import ServerHandle


def _hf_xet() -> Any:
    return importlib.import_module("hf_xet")


def legacy_upload(s: ServerHandle, items: list[bytes], repo: str = "t/demo") -> list[tuple[str, int]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        infos = _hf_xet().upload_bytes(items, s.url, xet_token(s, repo, "write"), None, None, None)
    return [(i.hash, i.file_size) for i in infos]


def legacy_download(s: ServerHandle, files: list[tuple[str, int]], dest: Path, repo: str = "t/demo") -> list[bytes]:
    hf_xet = _hf_xet()
    dest.mkdir(parents=True, exist_ok=True)
    infos = [hf_xet.PyXetDownloadInfo(str(dest / f"f{i}"), h, n) for i, (h, n) in enumerate(files)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        hf_xet.download_files(infos, s.url, xet_token(s, repo, "read"), None, None)
    return [(dest / f"f{i}").read_bytes() for i in range(len(files))]


def session_upload(s: ServerHandle, items: list[bytes], repo: str = "t/demo", **kw: object) -> list[tuple[str, int]]:
    if not kw:
        token, exp = xet_token(s, repo, "write")
        kw = {"endpoint": s.url, "token": token, "token_expiry_unix_secs": exp}
    with _hf_xet().XetSession().new_upload_commit(**kw) as commit:
        uploads = [commit.start_upload_bytes(d) for d in items]
    infos = [u.result().xet_info for u in uploads]
    return [(i.hash, i.file_size) for i in infos]


def session_download(s: ServerHandle, files: list[tuple[str, int]], dest: Path, repo: str = "t/demo") -> list[bytes]:
    hf_xet = _hf_xet()
    dest.mkdir(parents=True, exist_ok=True)
    token, exp = xet_token(s, repo, "read")
    group = hf_xet.XetSession().new_file_download_group(endpoint=s.url, token=token, token_expiry_unix_secs=exp)
    for i, (h, n) in enumerate(files):
        group.start_download_file(hf_xet.XetFileInfo(h, n), str(dest / f"f{i}"))
    group.wait_to_finish()
    return [(dest / f"f{i}").read_bytes() for i in range(len(files))]
