"""Server services: the domain logic behind the routes (CAS planning, dedup, xorb and shard intake, repos and commits)."""
