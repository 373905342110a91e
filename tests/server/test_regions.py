"""Regions (docs/architecture.md, "Several nodes"): the xet token routes answer the CAS URL of the client's region.

Pure parsing/lookup of ``xetfs.server.regions``, one-line start errors of ``xetfs serve``, the real server on
loopback (peer address, X-Forwarded-For only when trusted, /health and /metrics), and unmodified
huggingface_hub + hf_xet against a node whose region map sends loopback clients to the node itself."""
from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from xetfs.errors import ValidationError
from xetfs.server.regions import (RegionMap, build_region_map, parse_address, parse_cas_url_spec,
                                  parse_network_spec)
from xetfs.testing.deps import required
from xetfs.testing.hub import serve_error
from xetfs.testing.server import ServerHandle, make_bytes, running_server

EU, US, LOCAL = "http://node-eu:8080", "http://node-us:8080", "http://local-node:1"
REGION_ARGS = ["--region", "eu", "--region-network", "127.0.0.0/8=local", "--region-network", "10.1.0.0/16=eu",
               "--region-network", "10.9.0.0/16=us", "--region-network", "10.9.9.0/24=local",
               "--region-cas-url", f"local={LOCAL}", "--region-cas-url", f"eu={EU}",
               "--region-cas-url", f"us={US}/"]


# ---------------------------------------------------------------- parsing


def test_parse_specs() -> None:
    assert parse_network_spec(" 10.1.0.0/16 = eu ") == (ipaddress.ip_network("10.1.0.0/16"), "eu")
    assert parse_network_spec("2001:db8::/32=us-east-1")[1] == "us-east-1"
    assert parse_network_spec("192.0.2.7=one")[0].prefixlen == 32
    assert parse_cas_url_spec("eu=https://cas.example:8443/") == ("eu", "https://cas.example:8443")
    assert parse_cas_url_spec("eu=http://[::1]:80/prefix") == ("eu", "http://[::1]:80/prefix")


@pytest.mark.parametrize("spec, words", [
    ("10.1.0.0/33=eu", "bad network"), ("10.1.2.3/16=eu", "host bits"), ("nonsense=eu", "bad network"),
    ("10.0.0.0/8", "CIDR=REGION"), ("=eu", "CIDR=REGION"), ("10.0.0.0/8=", "CIDR=REGION"),
    ("10.0.0.0/8=bad name", "bad region name"), ("10.0.0.0/8=e\"u", "bad region name")])
def test_bad_network_specs(spec: str, words: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_network_spec(spec)
    assert words in str(exc.value) and "--region-network" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("spec", ["eu=ftp://x", "eu=node:8080", "eu=http://", "eu=http://h:99999",
                                  "eu=http://h/?q=1", "eu=http://h/#f", "eu=http://u:p@h", "eu",
                                  "eu=//h:80", "e u=http://h"])
def test_bad_cas_url_specs(spec: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_cas_url_spec(spec)
    assert "--region-cas-url" in str(exc.value) and "\n" not in str(exc.value)


def test_build_cross_checks(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"region 'us' \(network 10.9.0.0/16\) has no CAS URL"):
        build_region_map("eu", ["10.9.0.0/16=us"])
    build_region_map("eu", ["10.1.0.0/16=eu"])                     # own region: this node's URL
    with pytest.raises(ValidationError, match="given twice"):
        build_region_map(None, ["10.1.0.0/16=eu", "10.1.0.0/16=us"], ["eu=http://a", "us=http://b"])
    with pytest.raises(ValidationError, match="two CAS URLs"):
        build_region_map(None, [], ["eu=http://a", "eu=http://b"])
    with pytest.raises(ValidationError, match="--region"):
        build_region_map("no good")


def test_regions_file(tmp_path: Path) -> None:
    path = tmp_path / "regions.json"
    path.write_text(json.dumps({"region": "eu", "networks": {"10.1.0.0/16": "eu", "10.9.0.0/16": "us"},
                                "cas_urls": {"eu": EU}}))
    with pytest.raises(ValidationError, match="'us'"):               # file alone lacks us's URL
        build_region_map(regions_file=path)
    rmap = build_region_map(None, ["127.0.0.0/8=eu"], [f"us={US}"], regions_file=path)   # flags add to it
    assert rmap.region == "eu" and rmap.cas_url("10.9.0.1", None, "http://self") == US
    assert rmap.cas_url("127.0.0.1", None, "http://self") == EU
    assert build_region_map("us", [], [f"us={US}"], regions_file=path).region == "us"     # --region wins
    for text, words in (("{", "not JSON"), ("[]", "JSON object"), ('{"regionz": "eu"}', "unknown keys"),
                        ('{"networks": {"10.0.0.0/40": "eu"}}', "bad network"),
                        ('{"networks": ["10.0.0.0/8"]}', "must be JSON objects"),
                        ('{"cas_urls": {"eu": 5}}', "bad CAS URL")):
        path.write_text(text)
        with pytest.raises(ValidationError, match=words):
            build_region_map(regions_file=path)
    with pytest.raises(ValidationError, match="--regions"):
        build_region_map(regions_file=tmp_path / "missing.json")


# ---------------------------------------------------------------- lookup


def test_lookup_rules() -> None:
    rmap = build_region_map("eu", ["10.0.0.0/8=us", "10.1.0.0/16=eu", "10.1.2.0/24=us", "2001:db8::/32=us"],
                            [f"us={US}", f"eu={EU}"])
    url = lambda peer, xff=None: rmap.cas_url(peer, xff, "http://self")  # noqa: E731
    assert url("10.1.2.3") == US                      # most specific network wins
    assert url("10.1.3.3") == EU and url("10.200.0.1") == US
    assert url("2001:db8::5") == US and url("::ffff:10.1.2.9") == US
    assert url("192.0.2.1") == EU and url(None) == EU and url("not-an-ip") == EU   # unknown: own region URL
    assert url("192.0.2.1", "10.1.2.3") == EU         # X-Forwarded-For ignored unless trusted
    trusting = RegionMap(rmap.region, rmap.networks, rmap.cas_urls, trust_forwarded_for=True)
    assert trusting.cas_url("192.0.2.1", " 10.1.2.3 , 192.0.2.1", "http://self") == US   # leftmost entry
    assert trusting.cas_url("10.1.2.3", "garbage", "http://self") == EU                   # unusable -> own region
    assert trusting.cas_url("10.1.2.3", None, "http://self") == US                        # no header: peer
    # own region without a URL, and no configuration at all: the request's base URL (this node)
    assert build_region_map("eu", ["10.1.0.0/16=eu"]).cas_url("10.1.0.1", None, "http://self") == "http://self"
    assert RegionMap().cas_url("10.1.0.1", "10.9.0.1", "http://self") == "http://self"


def test_parse_address_forms() -> None:
    assert str(parse_address("[2001:db8::1]:443")) == "2001:db8::1"
    assert str(parse_address('"10.0.0.1:5678"')) == "10.0.0.1"
    assert str(parse_address("::ffff:127.0.0.1")) == "127.0.0.1"
    assert parse_address("") is None and parse_address("unknown") is None


# ---------------------------------------------------------------- the real server


def test_bad_config_is_one_line_at_start(tmp_path: Path) -> None:
    assert "bad network '10.1.0.0/33'" in serve_error(tmp_path, ["--region-network", "10.1.0.0/33=eu"])
    assert "bad CAS URL" in serve_error(tmp_path, ["--region-cas-url", "eu=node-eu:8080"])
    assert "has no CAS URL" in serve_error(tmp_path, ["--region-network", "10.0.0.0/8=us"])
    assert "not JSON" in serve_error(tmp_path, ["--regions", str(Path(__file__))])
    assert not (tmp_path / "d" / "server.json").exists()


def token_urls(srv: ServerHandle, op: str = "xet-read-token/main", xff: str | None = None) -> tuple[str, str]:
    status, headers, body = srv.request("GET", f"/api/models/t/demo/{op}",
                                        headers={"X-Forwarded-For": xff} if xff else None)
    assert status == 200, body
    return json.loads(body)["casUrl"], headers["X-Xet-Cas-Url"]


def test_default_is_this_node(server: ServerHandle) -> None:
    server.create_repo("t/demo")
    assert token_urls(server) == (server.url, server.url)
    assert token_urls(server, xff="10.9.0.1") == (server.url, server.url)
    assert json.loads(server.request("GET", "/health", token=None)[2]) == {"status": "ok", "region": None}
    assert server.metrics()['xetfs_node_info{region=""}'] == 1


def test_token_routes_follow_peer_network(tmp_path: Path) -> None:
    with running_server(tmp_path, extra_args=REGION_ARGS) as srv:
        srv.create_repo("t/demo")
        for op in ("xet-read-token/main", "xet-write-token/main", "xet-write-token/None?create_pr=1"):
            assert token_urls(srv, op) == (LOCAL, LOCAL), op
        assert token_urls(srv, xff="10.9.0.1") == (LOCAL, LOCAL)           # not trusted: peer 127.0.0.1
        assert json.loads(srv.request("GET", "/health", token=None)[2]) == {"status": "ok", "region": "eu"}
        metrics = srv.metrics()
        assert metrics['xetfs_node_info{region="eu"}'] == 1 and 'xetfs_node_info{region=""}' not in metrics


def test_trusted_forwarded_for_picks_region(tmp_path: Path) -> None:
    with running_server(tmp_path, extra_args=[*REGION_ARGS, "--trust-forwarded-for"]) as srv:
        srv.create_repo("t/demo")
        assert token_urls(srv, xff="10.9.3.4, 127.0.0.1") == (US, US)
        assert token_urls(srv, "xet-write-token/main", xff="10.9.9.9") == (LOCAL, LOCAL)   # /24 beats /16
        assert token_urls(srv, xff="10.1.2.3") == (EU, EU)
        assert token_urls(srv, xff="192.0.2.1") == (EU, EU)            # unknown network: own region (eu)
        assert token_urls(srv, xff="garbage") == (EU, EU)
        assert token_urls(srv) == (LOCAL, LOCAL)                        # no header: the peer


def test_hf_xet_through_region_map(tmp_path: Path, hf_client_env: None) -> None:
    hub = required("huggingface_hub")
    with running_server(tmp_path) as srv:
        # the port is known once started: restart with a map sending loopback clients (region "local") to
        # this node under another name (localhost), everyone else to region "eu" = a dead port; so the
        # token answers differ from the default (the request's base URL) and hf_xet only works if the map
        # is applied
        own = srv.url.replace("127.0.0.1", "localhost")
        srv.stop()
        srv.extra_args = ["--region", "eu", "--region-network", "127.0.0.0/8=local",
                          "--region-cas-url", f"local={own}", "--region-cas-url", "eu=http://127.0.0.1:9"]
        srv.start()
        api = hub.HfApi(endpoint=srv.url, token=srv.token)
        api.create_repo("t/demo")
        assert token_urls(srv, "xet-write-token/main") == (own, own) and own != srv.url
        data = make_bytes("float32", 3 * 1024 * 1024, 11)
        api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="t/demo")
        (entry,) = api.get_paths_info("t/demo", ["w.bin"])
        assert entry.xet_hash                                           # went through hf_xet, not LFS
        assert srv.metrics()["xetfs_cas_xorb_upload_bytes_total"] > 0
        path = hub.hf_hub_download("t/demo", "w.bin", endpoint=srv.url, token=srv.token,
                                   cache_dir=tmp_path / "cache")
        assert Path(path).read_bytes() == data
        assert srv.metrics()["xetfs_cas_reconstructions_total"] > 0     # downloaded through the CAS
