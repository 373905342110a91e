"""CAS requests for tests of a running server: real xorbs and shards built with xetfs.core (tiny chunks, so small
data gives many chunks), their upload, and reassembling a reconstruction from the fetched xorb ranges."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from xetfs.core.chunking import chunk_data, file_hash_of
from xetfs.core.hashing import MerkleHash, sha256_to_shard, verification_hash
from xetfs.core.shard import FileInfo, FileTerm, Shard, serialize_upload_shard, xorb_info_from_built
from xetfs.core.params import ChunkingParams, XorbParams
from xetfs.core.reconstruction import FetchRange, Reconstruction
from xetfs.core.xorb import BuiltXorb, built_from_chunks, decode_chunks
from xetfs.testing.hub import cas_token
from xetfs.testing.server import ServerHandle, make_bytes
from xetfs.write.upload import UploadParams

__all__ = ["TINY_UPLOAD", "BuiltFile", "assemble", "build_file", "cas_token", "fetch_ranges", "upload"]

# Upload parameters that make small test data into many chunks and several xorbs.
TINY_UPLOAD = UploadParams(chunking=ChunkingParams.tiny(), xorb=XorbParams.tiny(), read_block_bytes=8 * 1024)


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


def upload(srv: ServerHandle, f: BuiltFile, token: str, xorb_body: bytes | None = None) -> tuple[int, int]:
    """POST the xorbs then the shard; -> (last xorb status, shard status)."""
    s1 = 0
    for x in f.xorbs:
        s1, _, _ = srv.request("POST", f"/v1/xorbs/default/{x.hash}", xorb_body or x.data, token=token)
    s2, _, _ = srv.request("POST", "/v1/shards", f.shard(), token=token)
    return s1, s2


def fetch_ranges(srv: ServerHandle, r: Reconstruction) -> dict[FetchRange, bytes]:
    """GET every fetch range of ``r`` (signed data URLs, no token) -> its bytes, checking each is a 206."""
    out = {}
    for frs in r.fetch.values():
        for fr in frs:
            status, _, body = srv.request("GET", fr.url, headers={"Range": f"bytes={fr.byte_start}-{fr.byte_end}"},
                                          token=None)
            assert status == 206, (status, body[:200])
            out[fr] = body
    return out


def assemble(r: Reconstruction, fetched: dict[FetchRange, bytes] | Callable[[FetchRange], bytes]) -> bytes:
    """The bytes ``r`` describes from its fetched ranges (``offset_into_first_range`` not yet applied)."""
    get = fetched.__getitem__ if isinstance(fetched, dict) else fetched
    out = []
    for term in r.terms:
        fr = next(fr for fr in r.fetch[term.xorb_hash] if fr.contains(term))
        chunks = decode_chunks(get(fr))
        out.append(b"".join(chunks[term.chunk_start - fr.chunk_start:term.chunk_end - fr.chunk_start]))
    return b"".join(out)
