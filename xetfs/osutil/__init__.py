"""Small local-OS helpers shared by every stage: atomic file replacement and process liveness.

Owns: ``atomic`` (temp file, fsync, rename, fsync of the directory) and ``process`` (``pid_alive``).
May import: ``xetfs.errors`` and the standard library only. Everything in xetfs may import it.
"""
