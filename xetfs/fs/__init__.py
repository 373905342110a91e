"""The filesystem: the tree and VFS models, pyfuse3 operations, mount lifecycle and the mount's counters.

May import: ``xetfs.read``, ``xetfs.write``, ``xetfs.client``, ``xetfs.transport``, ``xetfs.protocol``,
``xetfs.core``, ``xetfs.osutil``, ``xetfs.errors``.
"""
