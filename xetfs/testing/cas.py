"""Helpers for server tests: real xorbs and shards built with xetfs.core (tiny 1 KiB chunks, so small data
gives many chunks), and CAS tokens from a running server."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from xetfs.core.chunking import chunk_data, file_hash_of
from xetfs.core.hashing import MerkleHash, sha256_to_shard, verification_hash
from xetfs.core.shard import FileInfo, FileTerm, Shard, serialize_upload_shard, xorb_info_from_built
from xetfs.core.xorb import BuiltXorb, built_from_chunks
from xetfs.core.params import ChunkingParams
from xetfs.testing.server import ServerHandle, make_bytes


@dataclass
class BuiltFile:
    data: bytes
    xorbs: list[BuiltXorb]
    info: FileInfo

    @property
    def xorb(self) -> BuiltXorb:
        return self.xorbs[0]

    @property
    def file_hash(self) -> MerkleHash:
        return self.info.file_hash

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def shard(self, info: FileInfo | None = None) -> bytes:
        return serialize_upload_shard(Shard((info or self.info,), tuple(xorb_info_from_built(x) for x in self.xorbs)))


def build_file(size: int = 40_000, seed: int = 1, kind: str = "random", xorbs: int = 1) -> BuiltFile:
    """A file of tiny chunks split evenly over ``xorbs`` xorbs, one term per xorb."""
    data = make_bytes(kind, size, seed)
    chunks = chunk_data(data, ChunkingParams.tiny())
    step = -(-len(chunks) // xorbs)
    built = [built_from_chunks(chunks[i:i + step]) for i in range(0, len(chunks), step)]
    terms = tuple(FileTerm(x.hash, 0, len(x.chunk_hashes), sum(x.chunk_sizes)) for x in built)
    info = FileInfo(file_hash_of(chunks), terms, tuple(verification_hash(x.chunk_hashes) for x in built),
                    sha256_to_shard(hashlib.sha256(data).digest()))
    return BuiltFile(data, built, info)


def cas_token(srv: ServerHandle, repo: str = "t/demo", scope: str = "write", hub_token: str = "admin") -> str:
    status, headers, body = srv.request("GET", f"/api/models/{repo}/xet-{scope}-token/main", token=hub_token)
    assert status == 200, body
    obj = json.loads(body)
    assert headers["X-Xet-Access-Token"] == obj["accessToken"]
    return obj["accessToken"]  # type: ignore[no-any-return]


def upload(srv: ServerHandle, f: BuiltFile, token: str, xorb_body: bytes | None = None) -> tuple[int, int]:
    """POST the xorbs then the shard; -> (last xorb status, shard status)."""
    s1 = 0
    for x in f.xorbs:
        s1, _, _ = srv.request("POST", f"/v1/xorbs/default/{x.hash}", xorb_body or x.data, token=token)
    s2, _, _ = srv.request("POST", "/v1/shards", f.shard(), token=token)
    return s1, s2
