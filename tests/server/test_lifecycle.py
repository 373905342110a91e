"""Process lifecycle of ``xetfs serve``: graceful SIGTERM, SIGKILL in the middle of an upload then restart
(the store stays consistent and the retried upload succeeds), persistence across restarts, audit log."""
from __future__ import annotations

import json
import signal
import socket
import sqlite3

from xetfs.testing.server import running_server

from xetfs.testing.cas import build_file, cas_token, upload


def test_sigterm_is_graceful_and_data_persists(tmp_path):
    with running_server(tmp_path) as srv:
        srv.create_repo("t/demo")
        f = build_file(seed=300)
        assert upload(srv, f, cas_token(srv)) == (200, 200)
        token, port = srv.token, srv.port
        assert srv.stop(signal.SIGTERM) == 0
        assert not (srv.data_dir / "server.json").exists()
        assert "shutting down" in srv.log_text()
        srv.start()
        assert (srv.token, srv.port) == (token, port)
        assert srv.log_text().count("admin token") == 1          # printed once, on first start only
        tok = cas_token(srv, scope="read")
        status, _, body = srv.request("GET", f"/v1/reconstructions/{f.file_hash}", token=tok)
        assert status == 200 and json.loads(body)["terms"]


def _start_partial_upload(srv, path: str, token: str, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port))
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body[: len(body) // 2])
    return sock


def test_sigkill_during_upload_then_restart(tmp_path):
    with running_server(tmp_path) as srv:
        srv.create_repo("t/demo")
        tok = cas_token(srv)
        done = build_file(seed=301)
        assert upload(srv, done, tok) == (200, 200)
        f = build_file(size=200_000, seed=302)
        sock = _start_partial_upload(srv, f"/v1/xorbs/default/{f.xorb.hash}", tok, f.xorb.data)
        srv.kill()
        sock.close()
        srv.start()
        tok = cas_token(srv)                                  # CAS tokens survive: same secret
        assert srv.request("HEAD", f"/v1/xorbs/default/{f.xorb.hash}", token=tok)[0] == 404
        assert not list(srv.data_dir.rglob("*.tmp"))
        db = sqlite3.connect(srv.data_dir / "metadata.sqlite3")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        assert upload(srv, f, tok) == (200, 200)               # the retried upload succeeds
        assert srv.request("GET", f"/v1/reconstructions/{done.file_hash}", token=tok)[0] == 200
        assert srv.request("GET", f"/v1/reconstructions/{f.file_hash}", token=tok)[0] == 200


def test_audit_log_records_uploads_and_commits(tmp_path):
    with running_server(tmp_path) as srv:
        srv.create_repo("t/demo")
        f = build_file(seed=303)
        assert upload(srv, f, cas_token(srv)) == (200, 200)
        lines = [json.loads(x) for x in (srv.data_dir / "audit.log").read_text().splitlines()]
        actions = [(x["action"], x["token"], x["repo"]) for x in lines]
        assert actions[0] == ("create_repo", "admin", "t/demo")
        assert ("xorb", "admin", "model:t/demo") in actions and ("shard", "admin", "model:t/demo") in actions
        assert next(x for x in lines if x["action"] == "xorb")["bytes"] == len(f.xorb.data)
