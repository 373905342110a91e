"""A re-saved model uploads about what changed: through the writable mount and with ``xetfs upload``.

A 3-shard safetensors model (288 MiB, written with the ``safetensors`` package) is uploaded; one 8 MiB
tensor changes and the model is saved again with different shard boundaries. The new xorb bytes the server
stores (its own counter) must be <= 1.25 x the ideal + 1 MiB, where the ideal is the bytes of the chunks
``xetfs chunks`` lists for the new files but not for the old ones. Every upload below runs with a cache dir
the seed upload never used, so nothing is found in a local shard cache: the dedup comes from the mounted
revision and the server. A second ``xetfs upload`` of the same files from the same cache dir then finds
every chunk in its local shard cache, without a single dedup query.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xetfs.testing.models import ideal_bytes, model_tensors, save_sharded
from xetfs.testing.mount import mounted, wait_committed, xetfs_cli
from xetfs.testing.server import ServerHandle, running_server

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1024 * 1024
XORB_BYTES = "xetfs_cas_xorb_upload_bytes_total"


def _upload(srv: ServerHandle, repo: str, folder: Path, cache: Path) -> dict[str, int]:
    done = xetfs_cli("upload", repo, str(folder), "--json", "--endpoint", srv.url, "--cache-dir", str(cache),
                     env={"XETFS_TOKEN": srv.token})
    return dict(json.loads(done.stdout))


def _edit_first_tensor(path: Path) -> int:
    """Overwrite the bytes of the first tensor in place (the header is unchanged); returns their size."""
    with open(path, "r+b") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
        start, end = min(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
        f.seek(8 + header_len + start)
        f.write(np.random.default_rng(9).standard_normal((end - start) // 4, dtype=np.float32).tobytes())
    return int(end - start)


def test_a_resaved_model_uploads_about_the_changed_tensor(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    save_sharded(old, model_tensors(changed=False), [12, 24])
    save_sharded(new, model_tensors(changed=True), [9, 22])
    ideal = ideal_bytes(old, new)
    assert 8 * MiB <= ideal <= 10 * MiB
    bound = 1.25 * ideal + MiB

    with running_server(tmp_path / "server-mount") as srv:     # through the writable mount
        srv.create_repo("org/model")
        _upload(srv, "org/model", old, tmp_path / "seed-cache")
        with mounted(srv, "org/model", tmp_path / "mnt", cache_dir=tmp_path / "mount-cache") as m:
            before = srv.metrics()[XORB_BYTES]
            save_sharded(m.path, model_tensors(changed=True), [9, 22])
            resaved = wait_committed(m)
            through_mount = srv.metrics()[XORB_BYTES] - before
            assert resaved["conflicts"] == [] and resaved["failed"] == {}

            before = srv.metrics()[XORB_BYTES]
            tensor = _edit_first_tensor(m.path / "model-00001-of-00003.safetensors")
            edited = wait_committed(m)
            in_place = srv.metrics()[XORB_BYTES] - before
            expected = new / "model-00001-of-00003.safetensors"
            _edit_first_tensor(expected)
        with mounted(srv, "org/model", tmp_path / "check", cache_dir=tmp_path / "check-cache") as m:
            assert (m.path / "model-00001-of-00003.safetensors").read_bytes() == expected.read_bytes()
    commits = resaved["recent_commits"]                         # the saves may share commits or not
    assert sum(c["changes"] for c in commits) == 3
    assert sum(c["new_bytes"] + c["deduplicated_bytes"] for c in commits) == sum(
        p.stat().st_size for p in new.iterdir())
    assert all(sum(c["deduplicated_by_source"].values()) == c["deduplicated_bytes"] for c in commits)

    save_sharded(new, model_tensors(changed=True), [9, 22])     # undo the in-place edit of the reference
    with running_server(tmp_path / "server-upload") as srv:    # with xetfs upload
        srv.create_repo("org/model")
        _upload(srv, "org/model", old, tmp_path / "seed-cache")
        before = srv.metrics()[XORB_BYTES]
        first = _upload(srv, "org/model", new, tmp_path / "upload-cache")
        through_upload = srv.metrics()[XORB_BYTES] - before
        srv.create_repo("org/again")
        again = _upload(srv, "org/again", new, tmp_path / "upload-cache")
    print(f"ideal {ideal / MiB:.2f} MiB; mount {through_mount / MiB:.2f} MiB ({commits}); in-place edit of a "
          f"{tensor / MiB:.2f} MiB tensor {in_place / MiB:.2f} MiB ({edited['recent_commits'][-1]}); "
          f"xetfs upload {through_upload / MiB:.2f} MiB ({first}); again {again}")
    assert through_mount <= bound, (through_mount / MiB, ideal / MiB)
    assert in_place <= 1.25 * tensor + MiB, (in_place / MiB, tensor / MiB)
    assert through_upload <= bound, (through_upload / MiB, ideal / MiB)
    assert again["new_bytes"] == 0 and again["xorb_bytes_uploaded"] == 0 and again["dedup_queries"] == 0, again
    assert set(again["deduped_by_source"]) <= {"local_shard_cache", "session"}, again
