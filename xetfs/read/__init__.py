"""The read path: the chunk source seam (``source``), the chunk cache (``cache`` over ``memory_tier`` and
``disk_tier``), file layouts (``layout``, ``known``), reconstruction windows (``windows``), the fetcher
(``fetcher``, ``flight``), ``FileReader`` (``reader``), file formats and readahead (``formats``,
``readahead``) and snapshot download (``download``). See docs/architecture.md, "A read".

May import: ``xetfs.core``, ``xetfs.protocol``, ``xetfs.transport``, ``xetfs.client``, ``xetfs.osutil``,
``xetfs.errors``.
"""
