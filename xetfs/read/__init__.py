"""The read path: the chunk source seam (``source``), the chunk cache (``cache`` over ``memory_tier`` and
``disk_tier``), file layouts (``layout``, ``known``), reconstruction windows (``windows``), the fetcher
(``fetcher``, ``flight``), ``FileReader`` (``reader``, ``assembly``), file formats and readahead (``formats``,
``readahead``), snapshot download (``download``), revision snapshots (``snapshot``) and cache management: the
tier's files (``disk_files``), pins (``pins``), small regular files (``regular_store``), ``prefetch``, ``cache_admin`` and bundles (``bundle``). See
docs/architecture.md, "A read" and "Cache management".

May import: ``xetfs.core``, ``xetfs.protocol``, ``xetfs.transport``, ``xetfs.client``, ``xetfs.osutil``,
``xetfs.errors``.
"""
