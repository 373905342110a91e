"""Clients of the two APIs: ``HubClient`` (repo API), ``CasClient`` (Xet CAS API), tokens, endpoint and token settings.

May import: ``xetfs.core``, ``xetfs.protocol``, ``xetfs.transport``, ``xetfs.osutil``, ``xetfs.errors``.
"""
