"""``--log-format json`` (cli/logformat.py): every log line of ``xetfs serve`` and of a mount daemon is one
JSON object (time, level, logger, message, and the traceback when there is one)."""
from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from xetfs.cli.logformat import JsonFormatter
from xetfs.testing.mount import mounted, seeded_server
from xetfs.testing.server import make_bytes
from xetfs.testing.sync import wait_until

KEYS = {"time", "level", "logger", "message"}


def _objects(text: str) -> list[dict[str, Any]]:
    """Every line must be a JSON object with the documented keys."""
    objs = []
    for line in text.splitlines():
        obj = json.loads(line)
        assert isinstance(obj, dict) and KEYS <= obj.keys(), line
        objs.append(obj)
    return objs


def test_a_record_with_an_exception_is_one_line_with_its_traceback() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logging.LogRecord("xetfs.x", logging.ERROR, __file__, 1, "failed: %s", ("a\nb",), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    obj = json.loads(line)
    assert obj.keys() == KEYS | {"exception"}
    assert obj["level"] == "ERROR" and obj["logger"] == "xetfs.x" and obj["message"] == "failed: a\nb"
    assert obj["exception"].startswith("Traceback") and "ValueError: bad\nvalue" in obj["exception"]
    assert obj["time"].endswith("Z") and len(obj["time"]) == len("2026-01-02T03:04:05.678Z")


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_serve_logs_json_lines_on_stderr(tmp_path: Path) -> None:
    data = tmp_path / "data"
    err_path = tmp_path / "stderr"
    with open(err_path, "wb") as err, open(tmp_path / "stdout", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "xetfs.cli.main", "serve", "--log-format", "json",
                                 "--data", str(data), "--host", "127.0.0.1", "--port", "0"],
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        info = wait_until(lambda: (data / "server.json").exists() and json.loads((data / "server.json").read_text()),
                          "the server to listen")
        assert _get(f"{info['url']}/health") == 200
        assert _get(f"{info['url']}/no/such/route") == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    said = [json.loads(line) for line in (tmp_path / "stdout").read_text().splitlines()]   # stdout: JSON too
    assert said == [{"event": "admin_token", "path": str(data / "admin_token"),
                     "token": (data / "admin_token").read_text().strip()},
                    {"event": "listening", "url": info["url"]}], said
    objs = _objects(err_path.read_text())
    messages = [(o["level"], o["logger"], o["message"]) for o in objs]
    assert ("INFO", "xetfs.server", "shutting down") in messages
    access = [m for level, logger, m in messages if logger == "xetfs.server.access"]
    assert any(m.startswith("GET /health 200 ") for m in access), access
    assert any(m.startswith("GET /no/such/route 404 ") for m in access), access
    fields = [{k: o[k] for k in ("method", "path", "status")} for o in objs if o["logger"] == "xetfs.server.access"]
    assert {"method": "GET", "path": "/no/such/route", "status": 404} in fields, "structured access fields"
    assert all(isinstance(o["bytes"], int) and isinstance(o["duration_ms"], float)
               for o in objs if o["logger"] == "xetfs.server.access")


def test_a_mount_daemon_logs_json_lines(tmp_path: Path, fuse: None) -> None:
    data = make_bytes("random", 300_000, seed=3)
    with seeded_server(tmp_path, "t/logs", {"a.bin": data}) as (srv, _):
        with mounted(srv, "t/logs", tmp_path / "mnt", args=["--log-format", "json"]) as m:
            assert (m.path / "a.bin").read_bytes() == data
    objs = _objects(m.logs())      # the daemon's stdout and stderr, after its unmount
    messages = [o["message"] for o in objs if o["logger"] == "xetfs.fs.mount"]
    assert any(msg.startswith("mounted t/logs") for msg in messages), messages
    assert any(msg.startswith("unmounted ") for msg in messages), messages
