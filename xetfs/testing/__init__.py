"""The shipped test kit: deterministic data, a running server, real mounts, SeaweedFS and PostgreSQL services,
and the storage and metadata conformance suites. Used by tests/ and scripts/; never by the product.
"""
