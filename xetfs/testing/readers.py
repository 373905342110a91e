"""Test kit for readers handed to the VFS (``xetfs.fs.vfs.Reader``) by tests' own backends."""
from __future__ import annotations

__all__ = ["Unstreamed"]


class Unstreamed:
    """The stream side of a test reader that has no background to stream in: ``stream_rest`` starts nothing
    (as ``FileReader.stream_rest`` without a nursery); opens and closes of its handles are counted."""

    handles = 0

    def stream_rest(self, window_bytes: int = 0, after: object = ()) -> bool:
        return False

    def opened(self) -> None:
        self.handles += 1

    def closed(self) -> None:
        self.handles -= 1
