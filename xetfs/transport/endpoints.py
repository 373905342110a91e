"""Several nodes of one store: prefer the lowest-latency healthy one, fail over when one dies
(docs/architecture.md, "Several nodes").

A client may be given several endpoints (``--endpoint URL1,URL2``, or ``XETFS_ENDPOINT`` with commas): nodes of
one cluster (``xetfs serve`` over one bucket and one database), each answering every Hub and CAS route. The Hub
token routes answer with a ``casUrl`` (docs/protocol.md, "Xet tokens"): the node itself, or the CAS node
of the client's region.

Selection (pure: ``EndpointHealth``; times are seconds passed in by the caller, no clock is read here).
Every node has a probe latency (``GET /health``) and a "down until" time. ``order(urls, now)`` lists the nodes
that are up, fastest first — nodes within ``near_factor * best + near_slack_s`` of the fastest count as equally
fast and keep the order the user gave them in — then the nodes that are down, soonest back first. A node that is
down is never left out: when every node is down requests still go somewhere, and the retry schedule
(``xetfs.transport.retry``) backs off between rounds.

Health. ``node_failure(exc)`` says whether an error is the node's fault: a transport failure (connection
refused or reset, timeout: ``http_status`` 0, set by ``xetfs.transport.http``) or a 5xx answer. Such a failure marks
the node down for ``down_s``; a success or a good probe marks it up. A 4xx is the answer of a live node and
changes nothing; 408/429 ask to slow down, not to go elsewhere (the retry schedule honours them).

Failover (``Failover.call``, used by ``xetfs.client.hub``). One attempt walks the ordered nodes: a node failure
moves the request to the next node at once; any other error is the answer. Requests that must not be repeated
(commits, repo creation) move only when the first node never received them (``request_sent`` False: the
connection was refused). When every node failed, the last error goes to the caller's retry schedule.

CAS (``xetfs.client.cas``). The CAS URL comes from the token. A node failure of the CAS node marks it down;
the next attempt finds its node down (``should_switch``) and fetches a new token, which the Hub route of a live
node answers with its own ``casUrl``. A data URL on a dead node (proxied reads) is dropped: the CAS client
raises ``FetchUrlExpired`` and the reader re-queries the reconstruction (``xetfs.read.reader``), now on a live node.
Presigned object-store URLs are on no node: a node's death does not touch them; they are only retried.

Probing (``Failover.ensure_probed``): ``GET /health`` on every node concurrently with ``probe_timeout_s``, at
first use, again when ``reprobe_s`` passed while a node is down, and every ``refresh_s`` for latency. A probe
runs in the task of the request that needs it (others go on with the current order), so no task outlives its
caller (docs/architecture.md, "Threads"). Health belongs to one HTTP client (``failover_for(client)``): the
Hub and CAS clients sharing a connection pool share what they learned. With a single endpoint nothing of this runs.

Reachability (``xetfs.transport.reachability``): a mount arms ``Failover.reach``; every request attempt of the
Hub (``call``) and CAS clients is then reported to it (``observe``), single endpoint or several.
"""
from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import trio

from xetfs.errors import TransientError, ValidationError, XetError
from xetfs.transport.reachability import Reachability

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FailoverParams:
    probe_timeout_s: float = 1.0  # a probe delays the request that runs it by at most this
    down_s: float = 60.0          # a failed node is tried last for this long (unless a probe finds it back)
    reprobe_s: float = 30.0       # while a node is down, probe again at most this often
    refresh_s: float = 300.0      # probe latencies again this often
    near_factor: float = 1.5      # latencies within best * near_factor + near_slack_s count as equal
    near_slack_s: float = 0.020


DEFAULT_FAILOVER = FailoverParams()


# ------------------------------------------------------------------------------------------------- parsing

def parse_endpoints(spec: str) -> tuple[str, ...]:
    """``"http://a:1, http://b:2/"`` -> ``("http://a:1", "http://b:2")``: http(s) URLs, no trailing ``/``,
    duplicates dropped, the given order kept."""
    urls: list[str] = []
    for part in spec.split(","):
        url = part.strip().rstrip("/")
        if not url:
            continue
        if not url.startswith(("http://", "https://")) or not urlsplit(url).netloc:
            raise ValidationError(f"endpoint must be an http:// or https:// URL, got {url!r}")
        if url not in urls:
            urls.append(url)
    if not urls:
        raise ValidationError(f"no endpoint URL in {spec!r}")
    return tuple(urls)


def join_endpoints(urls: Iterable[str]) -> str:
    return ",".join(urls)


def node_of(url: str) -> str:
    """The node a URL is served by: ``scheme://host:port`` (a CAS URL or a data URL is matched by it)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def node_failure(exc: BaseException, *, idempotent: bool = True) -> bool:
    """Is ``exc`` the node's fault (another node may do better)? See the module docstring."""
    if not isinstance(exc, TransientError):
        return False
    status = exc.http_status
    if status is None or not (status == 0 or status >= 500):
        return False
    return idempotent or (status == 0 and not exc.request_sent)


# ------------------------------------------------------------------------------------------ health (pure)

@dataclass(frozen=True, slots=True)
class NodeHealth:
    """What the mount's counters show of one node."""

    latency_s: float | None
    down: bool
    failures: int


@dataclass(slots=True)
class _NodeState:
    latency_s: float | None = None
    down_until_s: float | None = None
    failures: int = 0


class EndpointHealth:
    """What the client knows of each node; ``order`` picks where the next request goes."""

    def __init__(self, params: FailoverParams = DEFAULT_FAILOVER) -> None:
        self.params = params
        self._states: dict[str, _NodeState] = {}
        self._endpoint_nodes: set[str] = set()
        self.has_alternatives = False       # some endpoint list names several nodes
        self.last_probe_s: float | None = None
        self.failovers = 0
        self.retries = 0                    # attempts repeated by the retry schedule (``Failover.retried``)

    def _state(self, url: str) -> _NodeState:
        return self._states.setdefault(node_of(url), _NodeState())

    def register(self, urls: Sequence[str]) -> None:
        """An endpoint list in use (``parse_endpoints``)."""
        nodes = {node_of(u) for u in urls}
        self._endpoint_nodes |= nodes
        self.has_alternatives = self.has_alternatives or len(nodes) > 1

    def add_node(self, url: str) -> None:
        """A node learnt from a token (``casUrl``): its data URLs are node URLs too."""
        self._state(url)

    def is_node(self, url: str) -> bool:
        return node_of(url) in self._states or node_of(url) in self._endpoint_nodes

    def is_down(self, url: str, now_s: float) -> bool:
        until = self._states.get(node_of(url), _NodeState()).down_until_s
        return until is not None and now_s < until

    def mark_down(self, url: str, now_s: float) -> None:
        st = self._state(url)
        st.down_until_s = now_s + self.params.down_s
        st.failures += 1

    def mark_up(self, url: str, latency_s: float | None = None) -> None:
        st = self._state(url)
        st.down_until_s = None
        if latency_s is not None:
            st.latency_s = latency_s

    def order(self, urls: Sequence[str], now_s: float) -> list[str]:
        """Nodes that are up (fastest first, the given order among equals), then the down ones."""
        up = [u for u in urls if not self.is_down(u, now_s)]
        down = sorted((u for u in urls if self.is_down(u, now_s)),
                      key=lambda u: self._state(u).down_until_s or 0.0)
        known = [lat for u in up if (lat := self._state(u).latency_s) is not None]
        if known:
            near_s = min(known) * self.params.near_factor + self.params.near_slack_s

            def rank(u: str) -> tuple[int, float]:
                lat = self._state(u).latency_s
                return (0, 0.0) if lat is None or lat <= near_s else (1, lat)
            up.sort(key=rank)      # stable: equals keep the user's order
        return up + down

    def needs_probe(self, urls: Sequence[str], now_s: float) -> bool:
        if len(urls) < 2:
            return False
        if self.last_probe_s is None:
            return True
        age_s = now_s - self.last_probe_s
        some_down = any(self._state(u).down_until_s is not None for u in urls)
        return age_s >= self.params.refresh_s or (some_down and age_s >= self.params.reprobe_s)

    def snapshot(self) -> dict[str, NodeHealth]:
        return {node: NodeHealth(st.latency_s, st.down_until_s is not None, st.failures)
                for node, st in self._states.items()}


# ------------------------------------------------------------------------------------------ async driver

async def probe(client: httpx.AsyncClient, urls: Sequence[str], health: EndpointHealth, timeout_s: float) -> None:
    """``GET {url}/health`` on every endpoint concurrently; records latencies and dead nodes."""
    async def one(url: str) -> None:
        start = trio.current_time()
        ok = False
        with trio.move_on_after(timeout_s):
            try:
                ok = (await client.get(url + "/health", timeout=timeout_s)).status_code == 200
            except (httpx.HTTPError, OSError):
                ok = False
        now = trio.current_time()
        if ok:
            health.mark_up(url, now - start)
        else:
            health.mark_down(url, now)
            log.info("endpoint %s failed its health probe", url)

    async with trio.open_nursery() as nursery:
        for url in urls:
            nursery.start_soon(one, url)
    health.last_probe_s = trio.current_time()


class Failover:
    """Health of the nodes seen through one HTTP client, and the request walk over them."""

    def __init__(self, params: FailoverParams = DEFAULT_FAILOVER) -> None:
        self.params = params
        self.health = EndpointHealth(params)
        self._probing = False
        self.reach: Reachability | None = None     # armed by a mount

    def observe(self, exc: BaseException | None) -> None:
        """Report one request attempt's outcome (None: answered fine) to the armed ``Reachability``."""
        if self.reach is not None:
            self.reach.observe(exc)

    async def _observed(self, attempt: Callable[[str], Awaitable[T]], url: str) -> T:
        try:
            result = await attempt(url)
        except XetError as exc:
            self.observe(exc)
            raise
        self.observe(None)
        return result

    async def ensure_probed(self, client: httpx.AsyncClient, urls: Sequence[str]) -> None:
        if self._probing or not self.health.needs_probe(urls, trio.current_time()):
            return
        self._probing = True
        try:
            await probe(client, urls, self.health, self.params.probe_timeout_s)
            log.debug("endpoint health: %s", self.health.snapshot())
        finally:
            self._probing = False

    def preferred(self, urls: Sequence[str]) -> str:
        return urls[0] if len(urls) == 1 else self.health.order(urls, trio.current_time())[0]

    async def call(self, client: httpx.AsyncClient, urls: Sequence[str], attempt: Callable[[str], Awaitable[T]],
                   *, idempotent: bool = True) -> T:
        """``attempt(endpoint)`` on the best node; on a node failure, at once on the next one."""
        if len(urls) == 1:
            return await self._observed(attempt, urls[0])
        await self.ensure_probed(client, urls)
        last: XetError | None = None
        for url in self.health.order(urls, trio.current_time()):
            try:
                result = await self._observed(attempt, url)
            except XetError as exc:
                if not node_failure(exc):
                    raise
                self.health.mark_down(url, trio.current_time())
                if not node_failure(exc, idempotent=idempotent):
                    raise                 # it may have been received: never sent twice
                log.warning("endpoint %s failed (%s); trying the next one", url, exc)
                self.health.failovers += 1
                last = exc
                continue
            self.health.mark_up(url)
            return result
        assert last is not None
        raise last

    # -- the CAS side: the node is the token's casUrl, or the host of a proxied data URL
    def node_failed(self, url: str, exc: BaseException) -> bool:
        """Record a failure on ``url``; True when it was a known node's failure and other nodes are known
        (fetch a new token / a new reconstruction rather than retrying the same node)."""
        if not self.health.has_alternatives or not node_failure(exc) or not self.health.is_node(url):
            return False
        self.health.mark_down(url, trio.current_time())
        self.health.failovers += 1
        log.warning("node %s failed (%s); moving to another node", node_of(url), exc)
        return True

    def retried(self) -> None:
        """One request of a client on this pool is tried again (``retry_call``'s ``on_retry``)."""
        self.health.retries += 1

    def should_switch(self, cas_url: str) -> bool:
        """The token's CAS node is down and other nodes are known: fetch a new token first."""
        if not self.health.has_alternatives:
            return False
        self.health.add_node(cas_url)
        return self.health.is_down(cas_url, trio.current_time())


_BY_CLIENT: "weakref.WeakKeyDictionary[httpx.AsyncClient, Failover]" = weakref.WeakKeyDictionary()


def failover_for(client: httpx.AsyncClient) -> Failover:
    """The ``Failover`` of an HTTP client (made at first use; Hub and CAS clients on one pool share it)."""
    fo = _BY_CLIENT.get(client)
    if fo is None:
        fo = _BY_CLIENT[client] = Failover()
    return fo
