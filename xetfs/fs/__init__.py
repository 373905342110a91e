"""The FUSE adapter: VFS model, pyfuse3 operations, mount lifecycle."""
