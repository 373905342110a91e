"""xetfs serve: a Xet CAS plus the Hub repo API (aiohttp), over pluggable storage and metadata.

Layout (docs/architecture.md): ``app`` (wiring), ``context`` (State, metrics, audit), ``middleware`` (errors
to HTTP, access log), ``request`` (request parsing shared by routes), ``routes/`` (parse, authorize, call a
service, format), ``services/`` (domain logic), ``stores/`` (object storage), ``metadata/`` (SQL metadata),
``auth`` (tokens), ``regions``. May import ``xetfs.core``, ``xetfs.protocol``, ``xetfs.transport``,
``xetfs.osutil`` and ``xetfs.errors``; never the client side (client, read, write, fs, cli).
"""
