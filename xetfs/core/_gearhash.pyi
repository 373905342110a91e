"""Type stub of the optional C extension ``_gearhash.c`` (see ``xetfs.core.chunking._scan_native``)."""
from typing_extensions import Buffer

def scan(data: Buffer, h: int, chunk_len: int, min_size: int, max_size: int, mask: int,
         /) -> tuple[list[int], int, int]:
    """Chunk end offsets (relative to ``data``) found in ``data``, and the gear state and chunk length after it."""

def table() -> tuple[int, ...]:
    """The compiled gear table (256 ints), to check it against the Python one."""
