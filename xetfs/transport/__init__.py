"""Transport: the HTTP session (httpx plus the raw-socket range getter), retry with backoff, endpoints and failover.

Owns how bytes cross the network; knows nothing about what they mean (docs/architecture.md, "Stages").
May import: ``xetfs.protocol``, ``xetfs.core``, ``xetfs.osutil``, ``xetfs.errors``.
"""
