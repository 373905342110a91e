"""The shipped test kit, used by tests/ and scripts/ and never by the product:

- ``server``: deterministic data (``make_bytes``), a real ``xetfs serve`` in a subprocess, the storage conformance
  suite; ``services``: SeaweedFS (S3) and PostgreSQL, and two nodes of one cluster; ``metadata_suite``: the
  metadata conformance suite;
- ``mount``: real FUSE mounts through the real CLI (a failing ``xetfs umount`` fails the test);
- ``cas``: xorbs and shards built with xetfs.core, their upload, reassembling a reconstruction; ``hub``: commit
  bodies, Xet and Hub tokens, ``serve_error``; ``hf``: hf_xet round trips; ``files``: trees and ``pread``;
- ``proxy``: ``GatedProxy``, which holds a transfer at a known byte count; ``sync``: ``wait_until`` an observable
  state; ``deps``: optional packages that skip locally and fail under CI.
"""
