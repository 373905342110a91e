"""Sans-IO wire shapes shared by client and server: Hub JSON/NDJSON types, commit lines, HTTP status <-> error tables.

May import: ``xetfs.core`` and ``xetfs.errors`` only. No I/O.
"""
