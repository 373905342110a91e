"""The write path: local file digesting, upload (chunk, dedup, xorbs, shard, commit), staging with a typed
journal, and writeback. See docs/architecture.md, "A write". It never imports ``xetfs.fs``.

May import: ``xetfs.core``, ``xetfs.protocol``, ``xetfs.transport``, ``xetfs.client``, ``xetfs.osutil``, ``xetfs.errors``.
"""
