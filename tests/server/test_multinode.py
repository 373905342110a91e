"""Two ``xetfs serve`` nodes sharing one PostgreSQL (``--db``) and one SeaweedFS bucket (``--storage``) act
as one store: huggingface_hub (hf_xet) writes through node A and reads byte-identical data through
node B straight from the bucket; CAS tokens, data URLs and the cluster admin token of one node are valid on
the other (the server secret and the admin token hash live in the database); Hub tokens made with
``xetfs token create --db`` work on both; commits racing on one branch through both nodes give one winner
per race and clean 412s, and committers that retry on 412 lose nothing."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from xetfs.testing.deps import required
from xetfs.testing.hub import add_file, commit
from xetfs.testing.mount import SERVED
from xetfs.testing.server import ServerHandle, make_bytes
from xetfs.testing.metadata_suite import race
from xetfs.testing.services import PostgresHandle, SeaweedFSHandle, two_nodes

psycopg = required("psycopg")
hub = required("huggingface_hub")
from huggingface_hub import HfApi, snapshot_download  # noqa: E402

MiB = 1024 * 1024
pytestmark = pytest.mark.usefixtures("hf_client_env")


@pytest.fixture
def cluster(weed: SeaweedFSHandle, pg: PostgresHandle, tmp_path: Path) -> Iterator[tuple[ServerHandle, ServerHandle]]:
    """Node A (given --token) and node B (no --token: it generates its own) on a fresh database and prefix."""
    with two_nodes(weed, pg, tmp_path, b_own_token=True) as nodes:
        yield nodes


def test_write_through_one_node_read_through_the_other(cluster: tuple[ServerHandle, ServerHandle],
                                                       tmp_path: Path) -> None:
    a, b = cluster
    files = {"weights.bin": make_bytes("float32", 3 * MiB, 31), "noise.bin": make_bytes("random", MiB, 32),
             "config.json": b'{"hidden_size": 8}\n'}
    src = tmp_path / "src"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    api_a = HfApi(endpoint=a.url, token=a.token)
    api_a.create_repo("t/multi")
    api_a.upload_folder(folder_path=src, repo_id="t/multi")

    snap = Path(snapshot_download("t/multi", endpoint=b.url, token=a.token,     # A's admin token, on B
                                  cache_dir=tmp_path / "cache"))
    for name, data in files.items():
        assert (snap / name).read_bytes() == data, name
    mb = b.metrics()
    assert mb["xetfs_cas_reconstructions_total"] > 0, "B read the Xet files through its CAS"
    assert mb[SERVED] == 0, "data bytes came from the bucket, not through node B"
    assert a.metrics()["xetfs_cas_xorb_upload_bytes_total"] > 0 and mb["xetfs_cas_xorb_upload_bytes_total"] == 0

    # A CAS token issued by A is accepted by B (one server secret), and so are A's /v1/data URLs.
    status, _, body = a.request("GET", "/api/models/t/multi/xet-read-token/main")
    assert status == 200, body
    cas_token = json.loads(body)["accessToken"]
    entry = next(e for e in api_a.list_repo_tree("t/multi") if e.path == "noise.bin")
    status, _, body = b.request("GET", f"/v1/reconstructions/{entry.xet_hash}", token=cas_token)
    assert status == 200, body
    assert b.request("GET", f"/v1/reconstructions/{entry.xet_hash}", token=cas_token + "x")[0] == 401


def test_tokens_are_valid_on_every_node(cluster: tuple[ServerHandle, ServerHandle], pg: PostgresHandle) -> None:
    a, b = cluster
    assert b.request("GET", "/api/whoami-v2", token=a.token)[0] == 200, "the cluster admin token works on B"
    assert a.request("GET", "/api/whoami-v2", token=b.token)[0] == 401, "B's own token is only B's"
    db = next(arg for arg in a.extra_args if arg.startswith("postgresql://"))
    done = subprocess.run([sys.executable, "-m", "xetfs.cli.main", "token", "create", "--db", db, "--scope",
                           "read"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    read_token = done.stdout.strip()
    for node in (a, b):
        assert node.request("GET", "/api/whoami-v2", token=read_token)[0] == 200
        status, _, _ = node.request("POST", "/api/repos/create", json.dumps({"name": "x"}).encode(),
                                    {"Content-Type": "application/json"}, token=read_token)
        assert status == 403, "a read token cannot create repos"


def test_commits_racing_through_two_nodes(cluster: tuple[ServerHandle, ServerHandle]) -> None:
    a, b = cluster
    nodes = (a, b)
    a.create_repo("t/race")
    api_b = HfApi(endpoint=b.url, token=a.token)
    for round_ in range(3):                       # racers on one parent and one path: one winner per race
        head = api_b.repo_info("t/race").sha
        results = race(6, lambda i: commit(nodes[i % 2], "t/race", [add_file("shared.txt", f"racer {round_}.{i}\n".encode())],
                                           parent=head, summary=f"racer {round_}.{i}"))
        statuses = sorted(s for s, _, _ in results)
        assert statuses == [200] + [412] * 5, results
        winner = next(i for i, (s, _, _) in enumerate(results) if s == 200)
        status, _, data = nodes[1 - winner % 2].request("GET", "/t/race/resolve/main/shared.txt")
        assert status == 200 and data == f"racer {round_}.{winner}\n".encode(), "the winner's content"

    per_writer, writers = 3, 4                   # no parentCommit: the server's compare-and-swap decides

    def writer(i: int) -> int:
        conflicts = 0
        for k in range(per_writer):
            ops = [add_file(f"w{i}/{k}.txt", f"{i}.{k}".encode())]
            while (status := commit(nodes[i % 2], "t/race", ops, summary=f"w{i}.{k}"))[0] == 412:
                conflicts += 1
                assert conflicts < 100, "no progress"
            assert status[0] == 200, status
        return conflicts
    for outcome in race(writers, writer):      # race() hands exceptions back as values
        if isinstance(outcome, BaseException):
            raise outcome
    files = set(api_b.list_repo_files("t/race"))
    assert {f"w{i}/{k}.txt" for i in range(writers) for k in range(per_writer)} <= files, "nothing lost"
    history = api_b.list_repo_commits("t/race")
    assert len(history) == 1 + 3 + writers * per_writer, [c.title for c in history]


def test_bad_database_is_one_line_at_start(tmp_path: Path) -> None:
    from xetfs.testing.services import free_port

    for db, want in ((f"postgresql://postgres@127.0.0.1:{free_port()}/x?connect_timeout=2", "unreachable"),
                     ("mysql://host/x", "unsupported --db")):
        done = subprocess.run([sys.executable, "-m", "xetfs.cli.main", "serve", "--data", str(tmp_path / "d"),
                               "--port", "0", "--db", db], capture_output=True, text=True, timeout=30)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith("xetfs: error: "), done.stderr
        assert want in lines[0], lines
