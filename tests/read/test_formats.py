"""What the readahead learns from a file's own format: safetensors tensors, parquet column chunks."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import trio

from xetfs.read.formats import file_regions, parse_parquet_footer, parse_safetensors_header


class BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.size = data, len(data)

    async def read(self, offset: int, size: int, *, fetch_end: int | None = None) -> bytes:
        return self.data[offset:offset + size]


def test_safetensors_regions_are_the_tensors(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"a": np.zeros(10, np.float32), "b": np.ones(3, np.int8)}, str(tmp_path / "m.safetensors"))
    data = (tmp_path / "m.safetensors").read_bytes()
    base = 8 + struct.unpack("<Q", data[:8])[0]
    regions = trio.run(file_regions, BytesReader(data), "m.safetensors")
    assert regions is not None and regions.kind == "tensor"
    assert regions.bounds == [base, base + 40, base + 43] == parse_safetensors_header(data)[1]  # type: ignore[index]


def test_parquet_regions_are_the_column_chunks(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    n = 40_000
    table = pa.table({"i": rng.integers(0, 1 << 40, n), "f": rng.standard_normal(n),
                      "s": pa.array([str(x) for x in rng.integers(0, 10**6, n)]), "b": rng.integers(0, 2, n) > 0})
    path = tmp_path / "t.parquet"
    pq.write_table(table, str(path), row_group_size=5_000)
    data = path.read_bytes()
    (footer_len,) = struct.unpack("<I", data[-8:-4])
    footer_start = len(data) - 8 - footer_len
    md = pq.ParquetFile(str(path)).metadata
    expected = {4, footer_start}
    for r in range(md.num_row_groups):
        for c in range(md.num_columns):
            col = md.row_group(r).column(c)
            start = col.dictionary_page_offset or col.data_page_offset
            expected.update((start, start + col.total_compressed_size))
    assert md.num_row_groups == 8
    assert parse_parquet_footer(data[footer_start:-8], footer_start) == sorted(expected)
    regions = trio.run(file_regions, BytesReader(data), "t.parquet")
    assert regions is not None and regions.kind == "column" and regions.bounds == sorted(expected)


def test_other_or_damaged_files_have_no_regions() -> None:
    assert trio.run(file_regions, BytesReader(b"x" * 100), "a.bin") is None
    assert trio.run(file_regions, BytesReader(b"x" * 100), "a.parquet") is None
    assert trio.run(file_regions, BytesReader(b"\xff" * 100), "a.safetensors") is None
    bad = b"PAR1" + b"\x19\x1c" * 20 + struct.pack("<I", 40) + b"PAR1"
    assert trio.run(file_regions, BytesReader(bad), "a.parquet") is None
