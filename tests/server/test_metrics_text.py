"""The server's ``GET /metrics`` (server/context.py ``Metrics``, rendered by prometheus_client): valid
Prometheus text with the documented names (docs/architecture.md, "Metrics"), and counters that count."""
from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from xetfs.server.context import COUNTERS
from xetfs.testing.cas import build_file, cas_token
from xetfs.testing.server import ServerHandle
from xetfs.testing.sync import wait_until


def test_metrics_is_valid_prometheus_text_with_the_documented_names(server: ServerHandle) -> None:
    server.create_repo("t/m")
    wait_until(lambda: server.metrics().get('xetfs_http_requests_total{method="POST",status="200"}') == 1,
               "the create_repo request counted")
    status, headers, body = server.request("GET", "/metrics", token=None)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in COUNTERS:
        family = families[name.removesuffix("_total")]
        assert family.type == "counter" and family.documentation, name
        assert [s.value for s in family.samples if s.name == name] == [0.0], name
    requests = families["xetfs_http_requests"]
    assert requests.type == "counter" and requests.documentation
    assert [s.value for s in requests.samples
            if s.name == "xetfs_http_requests_total" and s.labels == {"method": "POST", "status": "200"}] == [1.0], \
        "the create_repo request"
    assert families["xetfs_node_info"].type == "gauge"
    assert [(s.name, s.labels, s.value) for s in families["xetfs_node_info"].samples] == \
        [("xetfs_node_info", {"region": ""}, 1.0)]


def test_request_methods_are_a_fixed_set_of_label_values(server: ServerHandle) -> None:
    for method in ("PROPFIND", "MKCOL"):
        assert server.request(method, "/health", token=None)[0] == 404
    other = 'xetfs_http_requests_total{method="OTHER",status="404"}'
    # the access log (which counts) runs once the answer is sent: wait for it, not for time
    counted = wait_until(lambda: (m := server.metrics()).get(other) == 2 and m, "both requests counted")
    assert not any("PROPFIND" in k or "MKCOL" in k for k in counted)


def test_byte_counters_stay_exact_past_six_significant_digits(server: ServerHandle) -> None:
    server.create_repo("t/demo")
    f = build_file(size=2_000_000, seed=5)
    assert len(f.xorb.data) > 1_000_000
    status, _, _ = server.request("POST", f"/v1/xorbs/default/{f.xorb.hash}", f.xorb.data, token=cas_token(server))
    assert status == 200
    metrics = server.metrics()
    assert metrics["xetfs_cas_xorb_upload_bytes_total"] == len(f.xorb.data)
    assert metrics["xetfs_cas_xorbs_stored_total"] == 1


def test_every_server_metric_is_documented() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
    table = set(re.findall(r"^\| `(xetfs_(?:cas|hub|http|node)_[a-z0-9_]+)", docs.read_text(), re.MULTILINE))
    assert table == set(COUNTERS) | {"xetfs_http_requests_total", "xetfs_node_info"}
