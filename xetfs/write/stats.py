"""The writeback's counters, served in the ``write`` section of a mount's stats (docs/architecture.md,
"The write path"): totals, and per commit the bytes sent and the bytes found already stored, by source
(``xetfs.write.upload.FROM_*``: the local shard cache, the server's global dedup, the same upload).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xetfs.write.session import UploadStats

RECENT_COMMITS = 16
PENDING_PATHS_SHOWN = 1000


@dataclass(frozen=True, slots=True)
class CommitStats:
    """What one commit of the writeback sent and what it found already stored, by source."""

    commit: str
    changes: int
    uploaded_bytes: int            # serialized xorb bytes sent
    new_bytes: int                 # chunk bytes that went into new xorbs
    deduplicated_bytes: int
    deduplicated_by_source: dict[str, int]

    def to_json(self) -> dict[str, object]:
        return {"commit": self.commit, "changes": self.changes, "uploaded_bytes": self.uploaded_bytes,
                "new_bytes": self.new_bytes, "deduplicated_bytes": self.deduplicated_bytes,
                "deduplicated_by_source": self.deduplicated_by_source}


@dataclass(slots=True)
class WritebackStats:
    commits: int = 0
    last_commit: str | None = None
    files_committed: int = 0
    uploaded_bytes: int = 0        # serialized xorb bytes sent
    new_bytes: int = 0             # chunk bytes that went into new xorbs
    deduplicated_bytes: int = 0    # chunk bytes found already stored
    upload_errors: int = 0
    last_error: str | None = None
    uploading: bool = False
    already_committed: int = 0     # resumed changes the head already held (no second commit)
    deduplicated_by_source: dict[str, int] = field(default_factory=dict)   # upload.FROM_* -> bytes
    recent_commits: list[CommitStats] = field(default_factory=list)        # the last RECENT_COMMITS

    def add_upload(self, upload: UploadStats) -> None:
        """Count what one upload (a commit's, or a stream's) sent and found already stored."""
        self.uploaded_bytes += upload.xorb_bytes_uploaded
        self.new_bytes += upload.new_bytes
        self.deduplicated_bytes += upload.deduped_bytes
        for source, n in upload.deduped_by_source.items():
            self.deduplicated_by_source[source] = self.deduplicated_by_source.get(source, 0) + n

    def to_json(self) -> dict[str, Any]:
        """The counters as the ``write`` section of a mount's stats shows them."""
        return {"uploaded_bytes": self.uploaded_bytes, "new_bytes": self.new_bytes,
                "deduplicated_bytes": self.deduplicated_bytes, "commits": self.commits,
                "last_commit": self.last_commit, "files_committed": self.files_committed,
                "upload_errors": self.upload_errors, "last_error": self.last_error,
                "already_committed": self.already_committed,
                "deduplicated_by_source": dict(sorted(self.deduplicated_by_source.items())),
                "recent_commits": [c.to_json() for c in self.recent_commits]}
