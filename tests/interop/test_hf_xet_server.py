"""The real hf_xet 1.8.0 (legacy functions and XetSession) against a real ``xetfs serve`` on loopback:
byte-identical round trips, ranged streams, global dedup, and hf_xet's default probing behaviour
(xorb grants -> 404 -> POST /v1/xorbs, v2 shards, v2 reconstructions, telemetry)."""
from __future__ import annotations

from pathlib import Path

import pytest

from xetfs.testing.deps import required
from xetfs.testing.hf import legacy_download, legacy_upload, session_download, session_upload
from xetfs.testing.hub import xet_token
from xetfs.testing.server import ServerHandle, make_bytes, running_server

hf_xet = required("hf_xet")

MiB = 1024 * 1024
CONTENTS = {"empty": b"", "tiny": b"hello xet\n", "random": make_bytes("random", 10 * MiB, 1),
            "float": make_bytes("float32", 10 * MiB, 2)}


pytestmark = pytest.mark.usefixtures("hf_client_env")


@pytest.fixture
def srv(tmp_path: Path):  # type: ignore[no-untyped-def]
    with running_server(tmp_path) as s:
        s.create_repo("t/demo")
        yield s


@pytest.mark.parametrize("api", ["legacy", "session"])
def test_round_trip_is_byte_identical(srv: ServerHandle, tmp_path: Path, api: str) -> None:
    items = list(CONTENTS.values())
    if api == "legacy":
        files = legacy_upload(srv, items)
        got = legacy_download(srv, files, tmp_path / "out")
    else:
        files = session_upload(srv, items)
        got = session_download(srv, files, tmp_path / "out")
    assert [n for _, n in files] == [len(d) for d in items]
    for name, want, have in zip(CONTENTS, items, got):
        assert have == want, name
    m = srv.metrics()
    assert m["xetfs_cas_xorb_upload_bytes_total"] > 10 * MiB
    assert m["xetfs_cas_data_bytes_served_total"] > 10 * MiB


def test_ranged_download_stream(srv: ServerHandle) -> None:
    data = CONTENTS["random"]
    ((h, n),) = session_upload(srv, [data])
    token, exp = xet_token(srv, "t/demo", "read")
    group = hf_xet.XetSession().new_download_stream_group(endpoint=srv.url, token=token,
                                                          token_expiry_unix_secs=exp)
    for start, end in ((5_000_000, 5_300_000), (0, 1), (n - 1000, n), (123_456, 4_567_890)):
        got = b"".join(bytes(b) for b in group.download_stream(hf_xet.XetFileInfo(h, n), start, end))
        assert got == data[start:end], (start, end)
    # unknown size: hf_xet sends speculative windows; the server answers 416 past EOF and clamps the end
    got = b"".join(bytes(b) for b in group.download_stream(hf_xet.XetFileInfo(h), 9 * MiB, None))
    assert got == data[9 * MiB:]
    group.finish()


@pytest.mark.parametrize("dedup_hmac", ["random", "none"])
def test_second_upload_stores_no_new_xorb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dedup_hmac: str) -> None:
    data = make_bytes("random", 10 * MiB, 3)
    with running_server(tmp_path / "s", extra_args=["--dedup-hmac", dedup_hmac]) as s:
        s.create_repo("t/demo")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "home1"))
        first = session_upload(s, [data])
        stored = s.metrics()["xetfs_cas_xorb_upload_bytes_total"]
        assert stored >= len(data)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "home2"))     # fresh client cache: only global dedup helps
        assert session_upload(s, [data]) == first
        m = s.metrics()
        assert m["xetfs_cas_xorb_upload_bytes_total"] == stored
        assert m["xetfs_cas_dedup_hits_total"] >= 1
        assert session_download(s, first, tmp_path / "out") == [data]


def test_default_client_behaviour_with_token_refresh_url(srv: ServerHandle, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """No knobs: telemetry on, grants probed, v2 shards and reconstructions, CAS URL from the token route."""
    monkeypatch.setenv("HF_XET_TELEMETRY_ENABLED", "true")
    data = make_bytes("text", 2 * MiB, 4)
    refresh = {"token_refresh_url": f"{srv.url}/api/models/t/demo/xet-write-token/main",
               "token_refresh_headers": {"Authorization": f"Bearer {srv.token}"}}
    ((h, n),) = session_upload(srv, [data], **refresh)
    group = hf_xet.XetSession().new_file_download_group(
        token_refresh_url=f"{srv.url}/api/models/t/demo/xet-read-token/main",
        token_refresh_headers={"Authorization": f"Bearer {srv.token}"})
    group.start_download_file(hf_xet.XetFileInfo(h, n), str(tmp_path / "out"))
    group.wait_to_finish()
    assert (tmp_path / "out").read_bytes() == data
    log = srv.log_text()
    assert "POST /v1/xorb-grants/default/" in log and " 404 " in log
    assert "POST /v2/shards 200" in log
    assert f"GET /v2/reconstructions/{h} 200" in log
