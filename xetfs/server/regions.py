"""Regions: which CAS node a client is sent to by the Hub xet token routes (docs/architecture.md).

The Hub token routes answer ``casUrl`` (JSON body) and ``X-Xet-Cas-Url`` (header); ``hf_xet`` and the xetfs
client then talk to that CAS. Several ``xetfs serve`` nodes sharing one bucket and one database act as one
store, so any node may hand out any other node's URL: the one for the client's region.

Configuration (all optional; see ``xetfs serve --help``):

- the node's own region, ``--region NAME``;
- client networks -> region, ``--region-network CIDR=REGION`` (repeatable);
- region -> CAS URL, ``--region-cas-url REGION=URL`` (repeatable);
- or the same in one JSON file, ``--regions FILE``::

      {"region": "eu",
       "networks": {"10.1.0.0/16": "eu", "10.2.0.0/16": "us"},
       "cas_urls": {"eu": "http://node-eu:8080", "us": "http://node-us:8080"}}

  Flags add to the file; the same network or region given twice with different values is an error.

Lookup (``RegionMap.cas_url``): the client address is the TCP peer, or the leftmost ``X-Forwarded-For``
entry when ``trust_forwarded_for`` (only behind a proxy that sets it: clients can write the header).
The most specific network containing it (longest prefix) names the region; that region's CAS URL is
the answer. No match, no usable address, or a match on the node's own region without a URL configured
-> the node's own region URL, and when that is not configured either, ``default_url`` (the base URL of
the request: this node, as without any configuration). Every region a network points to must have a
CAS URL unless it is the node's own region; this and every malformed value is a one-line
``ValidationError`` at start, never at request time.

Pure: stdlib ``ipaddress`` + ``urllib.parse``; no sockets, no clock.
"""
from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xetfs.errors import ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_REGION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_FILE_KEYS = frozenset({"region", "networks", "cas_urls"})


def parse_region_name(name: str, where: str) -> str:
    """A region name: letters, digits, ``_.-`` (safe as a metrics label value)."""
    if not isinstance(name, str) or not _REGION_NAME.fullmatch(name):
        raise ValidationError(f"{where}: bad region name {name!r} (want letters, digits, '_', '.', '-')")
    return name


def parse_network(cidr: str, where: str) -> IPNetwork:
    """``10.1.0.0/16`` or ``2001:db8::/32`` (a bare address is a /32 or /128); host bits must be zero."""
    if not isinstance(cidr, str):
        raise ValidationError(f"{where}: bad network {cidr!r} (want CIDR text)")
    try:
        return ipaddress.ip_network(cidr.strip(), strict=True)
    except ValueError as exc:
        raise ValidationError(f"{where}: bad network {cidr!r} ({exc})") from None


def parse_cas_url(url: str, where: str) -> str:
    """An absolute ``http(s)://HOST[:PORT][/PREFIX]`` URL without query or fragment; trailing ``/`` dropped."""
    if not isinstance(url, str):
        raise ValidationError(f"{where}: bad CAS URL {url!r} (want http(s)://HOST[:PORT])")
    try:
        parts = urlsplit(url.strip())
        port_ok = parts.port is None or parts.port > 0
    except ValueError as exc:
        raise ValidationError(f"{where}: bad CAS URL {url!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or not port_ok or parts.username or parts.password:
        raise ValidationError(f"{where}: bad CAS URL {url!r} (want http(s)://HOST[:PORT])")
    return url.strip().rstrip("/")


def _split_spec(spec: str, flag: str, form: str) -> tuple[str, str]:
    left, sep, right = spec.partition("=")
    if not sep or not left.strip() or not right.strip():
        raise ValidationError(f"{flag} {spec!r}: want {form}")
    return left.strip(), right.strip()


def parse_network_spec(spec: str) -> tuple[IPNetwork, str]:
    """``--region-network CIDR=REGION``."""
    cidr, region = _split_spec(spec, "--region-network", "CIDR=REGION")
    where = f"--region-network {spec!r}"
    return parse_network(cidr, where), parse_region_name(region, where)


def parse_cas_url_spec(spec: str) -> tuple[str, str]:
    """``--region-cas-url REGION=URL`` (split at the first ``=``: URLs may contain ``=`` only in queries,
    which are rejected anyway)."""
    region, url = _split_spec(spec, "--region-cas-url", "REGION=URL")
    where = f"--region-cas-url {spec!r}"
    return parse_region_name(region, where), parse_cas_url(url, where)


@dataclass(frozen=True, slots=True)
class RegionConfig:
    """Parsed, not yet cross-checked configuration (from a file and/or flags)."""

    region: str | None = None
    networks: tuple[tuple[IPNetwork, str], ...] = ()
    cas_urls: tuple[tuple[str, str], ...] = ()


def parse_regions_json(obj: Any, where: str) -> RegionConfig:
    """The ``--regions FILE`` document (see the module docstring)."""
    if not isinstance(obj, dict):
        raise ValidationError(f"{where}: want a JSON object with keys {sorted(_FILE_KEYS)}")
    unknown = set(obj) - _FILE_KEYS
    if unknown:
        raise ValidationError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(_FILE_KEYS)})")
    region = obj.get("region")
    networks = obj.get("networks", {})
    cas_urls = obj.get("cas_urls", {})
    if not isinstance(networks, dict) or not isinstance(cas_urls, dict):
        raise ValidationError(f"{where}: 'networks' and 'cas_urls' must be JSON objects")
    return RegionConfig(
        region=None if region is None else parse_region_name(region, f"{where}: region"),
        networks=tuple((parse_network(c, f"{where}: networks"), parse_region_name(r, f"{where}: networks"))
                       for c, r in networks.items()),
        cas_urls=tuple((parse_region_name(r, f"{where}: cas_urls"), parse_cas_url(u, f"{where}: cas_urls"))
                       for r, u in cas_urls.items()))


def load_regions_file(path: Path) -> RegionConfig:
    where = f"--regions {str(path)!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"{where}: {exc.strerror or exc}") from None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"{where}: not JSON ({exc})") from None
    return parse_regions_json(obj, where)


@dataclass(frozen=True, slots=True)
class RegionMap:
    """Which CAS URL a client gets. Build with ``build_region_map``; the default is "always this node"."""

    region: str | None = None
    networks: tuple[tuple[IPNetwork, str], ...] = ()     # most specific first
    cas_urls: Mapping[str, str] = field(default_factory=dict)
    trust_forwarded_for: bool = False

    @property
    def configured(self) -> bool:
        return bool(self.region or self.networks or self.cas_urls)

    def client_address(self, peer: str | None, forwarded_for: str | None = None) -> IPAddress | None:
        """The peer address, or the leftmost ``X-Forwarded-For`` entry when trusted; None if unusable."""
        if self.trust_forwarded_for and forwarded_for:
            return parse_address(forwarded_for.split(",")[0])
        return parse_address(peer)

    def region_for(self, address: IPAddress | None) -> str | None:
        """The region of the most specific configured network containing ``address``; None if none does."""
        if address is None:
            return None
        for network, region in self.networks:
            if address.version == network.version and address in network:
                return region
        return None

    def cas_url(self, peer: str | None, forwarded_for: str | None, default_url: str) -> str:
        """The ``casUrl`` for a client (see the module docstring for the rules)."""
        region = self.region_for(self.client_address(peer, forwarded_for))
        if region is not None and region in self.cas_urls:
            return self.cas_urls[region]
        return self.cas_urls.get(self.region, default_url) if self.region is not None else default_url

    def describe(self) -> str:
        """One log line."""
        nets = ", ".join(f"{n}={r}" for n, r in self.networks) or "none"
        urls = ", ".join(f"{r}={u}" for r, u in sorted(self.cas_urls.items())) or "none"
        return (f"region {self.region or '(none)'}; networks {nets}; CAS URLs {urls}; "
                f"X-Forwarded-For {'trusted' if self.trust_forwarded_for else 'ignored'}")


def parse_address(text: str | None) -> IPAddress | None:
    """An address as found in a peer name or an X-Forwarded-For entry (``1.2.3.4``, ``1.2.3.4:567``,
    ``[2001:db8::1]:443``, quoted); IPv4-mapped IPv6 becomes IPv4. None when it is not an address."""
    if not text:
        return None
    s = text.strip().strip('"')
    if s.startswith("["):
        s = s[1:s.find("]")] if "]" in s else s[1:]
    elif s.count(":") == 1:
        s = s.partition(":")[0]
    try:
        address = ipaddress.ip_address(s)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def build_region_map(region: str | None = None, network_specs: Iterable[str] = (),
                     cas_url_specs: Iterable[str] = (), regions_file: Path | None = None,
                     trust_forwarded_for: bool = False) -> RegionMap:
    """Parse and cross-check the ``xetfs serve`` flags (file first, flags added). One-line ValidationErrors."""
    base = load_regions_file(regions_file) if regions_file is not None else RegionConfig()
    own = parse_region_name(region, "--region") if region is not None else base.region
    networks: dict[IPNetwork, str] = {}
    for network, name in (*base.networks, *map(parse_network_spec, network_specs)):
        if networks.setdefault(network, name) != name:
            raise ValidationError(f"network {network} given twice: region {networks[network]!r} and {name!r}")
    cas_urls: dict[str, str] = {}
    for name, url in (*base.cas_urls, *map(parse_cas_url_spec, cas_url_specs)):
        if cas_urls.setdefault(name, url) != url:
            raise ValidationError(f"region {name!r} given two CAS URLs: {cas_urls[name]!r} and {url!r}")
    for network, name in networks.items():
        if name not in cas_urls and name != own:
            raise ValidationError(f"region {name!r} (network {network}) has no CAS URL: "
                                  f"add --region-cas-url {name}=URL")
    ordered = sorted(networks.items(), key=lambda item: (-item[0].prefixlen, item[0].version))
    return RegionMap(region=own, networks=tuple(ordered), cas_urls=cas_urls,
                     trust_forwarded_for=trust_forwarded_for)
