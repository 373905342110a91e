"""Only new chunks travel: a writable mount deduplicates against the previous version and the store.

Sizes are the issue's: a 64 MiB copy adds 0 xorb bytes; 1 MiB changed in the middle of a 256 MiB file
uploads <= 1.5 MiB; one tensor changed in a safetensors file uploads <= the tensor + 512 KiB. Measured on
the server's own counter of stored xorb bytes, ``xetfs_cas_xorb_upload_bytes_total``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from xetfs.testing.server import make_bytes, running_server
from xetfs.testing.mount import mounted, wait_committed

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1024 * 1024
KiB = 1024
XORB_BYTES = "xetfs_cas_xorb_upload_bytes_total"


def _uploaded(srv, since: float) -> float:
    return srv.metrics().get(XORB_BYTES, 0.0) - since


def test_copies_edits_and_tensor_changes_upload_only_new_chunks(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    src = tmp_path / "copy-src.bin"
    src.write_bytes(make_bytes("random", 64 * MiB, seed=1))
    big = make_bytes("random", 256 * MiB, seed=2)
    rng = np.random.default_rng(3)
    tensors = {f"layer{i}": rng.standard_normal(2 * MiB, dtype=np.float32) for i in range(6)}   # 8 MiB each
    tensor_bytes = tensors["layer3"].nbytes
    with running_server(tmp_path / "server") as srv:
        srv.create_repo("org/dd")
        with mounted(srv, "org/dd", tmp_path / "mnt") as m:
            shutil.copyfile(src, m.path / "first.bin")
            (m.path / "big.bin").write_bytes(big)
            save_file(tensors, str(m.path / "model.safetensors"))
            wait_committed(m)

            before = srv.metrics().get(XORB_BYTES, 0.0)
            shutil.copyfile(src, m.path / "second.bin")
            write = wait_committed(m)
            assert _uploaded(srv, before) == 0, write

            before = srv.metrics().get(XORB_BYTES, 0.0)
            change = make_bytes("random", MiB, seed=4)
            with open(m.path / "big.bin", "r+b") as f:      # copy-on-write: the rest comes from the repo
                f.seek(128 * MiB)
                f.write(change)
            write = wait_committed(m)
            assert _uploaded(srv, before) <= 1.5 * MiB, write

            before = srv.metrics().get(XORB_BYTES, 0.0)
            tensors["layer3"] = rng.standard_normal(2 * MiB, dtype=np.float32)
            save_file(tensors, str(m.path / "model.safetensors"))
            write = wait_committed(m)
            assert _uploaded(srv, before) <= tensor_bytes + 512 * KiB, write
            assert write["deduplicated_bytes"] > 0 and write["conflicts"] == []

        with mounted(srv, "org/dd", tmp_path / "check") as m:
            assert (m.path / "second.bin").read_bytes() == src.read_bytes()
            edited = bytearray(big)
            edited[128 * MiB:129 * MiB] = change
            assert (m.path / "big.bin").read_bytes() == edited
            loaded = load_file(str(m.path / "model.safetensors"))
            assert all(np.array_equal(loaded[k], v) for k, v in tensors.items())
