"""The sans-IO core: the Xet formats as pure functions, bytes in, values out (docs/protocol.md).

Owns: hashes (``hashing``), chunking (``chunking``), chunk compression (``compression``), xorbs (``xorb``,
``xorb_footer``), shards (``shard``), reconstruction plans (``reconstruction``), dedup sessions (``dedup``),
git blob ids (``gitblob``), spec constants and tunables (``params``).
May import: ``xetfs.errors`` only. No trio, httpx, pyfuse3, sockets, files, clocks or randomness.
"""
