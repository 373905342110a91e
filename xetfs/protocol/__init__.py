"""Sans-IO wire shapes shared by client and server (docs/protocol.md).

Owns: the HTTP status <-> error table (``status``), Hub JSON/NDJSON shapes (``hub``: tree entries, preupload,
commit lines, xet tokens, refs, repo info), CAS answers (``cas``), the reconstruction JSON (``reconstruction``).
May import: ``xetfs.core`` and ``xetfs.errors`` only. No I/O; a function that needs the time takes it.
"""
