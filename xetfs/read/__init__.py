"""The read path: chunk sources, the chunk cache (memory and disk tiers), file layouts, the fetcher,
``FileReader``, readahead and snapshot download. See docs/architecture.md, "A read".

May import: ``xetfs.core``, ``xetfs.protocol``, ``xetfs.transport``, ``xetfs.client``, ``xetfs.osutil``, ``xetfs.errors``.
"""
