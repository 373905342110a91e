"""The object store named on the command line (``--storage``, ``--s3-endpoint``), checked reachable."""
from __future__ import annotations

from pathlib import Path

from xetfs.errors import ValidationError
from xetfs.server.stores.base import Storage
from xetfs.server.stores.local import LocalStorage
from xetfs.server.stores.s3 import S3Location, S3Storage, credentials_from_env


def open_store(url: str | None, s3_endpoint: str | None) -> S3Storage | None:
    """``s3://BUCKET/PREFIX`` -> an S3 store answering a signed HEAD of its bucket; None = the embedded
    default (``local_store``). One-line errors."""
    if url is None:
        if s3_endpoint:
            raise ValidationError("--s3-endpoint needs --storage s3://BUCKET/PREFIX")
        return None
    if not url.startswith("s3://"):
        raise ValidationError(f"unsupported --storage {url!r} (want s3://BUCKET/PREFIX)")
    storage = S3Storage(S3Location.parse(url), endpoint=s3_endpoint, credentials=credentials_from_env())
    try:
        storage.check()
    except BaseException:
        storage.close()
        raise
    return storage


def local_store(data_dir: Path) -> Storage:
    return LocalStorage(data_dir / "objects")
