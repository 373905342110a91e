"""pyarrow reading one column of a parquet file through a real FUSE mount fetches about that column.

The file is written by pyarrow: 8 row groups, columns of mixed types (int64, float64, string, bool, int32),
random values (snappy does not shrink them much). Each read starts on a fresh mount with a fresh cache; the
bound holds for the worst of the repeats: fetched <= 1.3 x the column's compressed bytes (from the footer)
+ 1 MiB.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xetfs.testing.mount import FreshMount, uploaded_repo

pytestmark = [pytest.mark.fuse, pytest.mark.usefixtures("fuse")]

MiB = 1024 * 1024
ROWS = 1_600_000
REPEATS = 3


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory):
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = tmp_path_factory.mktemp("parquet")
    src = tmp / "src"
    src.mkdir()
    rng = np.random.default_rng(23)
    t = pa.table({"id": rng.integers(0, 1 << 62, ROWS), "x": rng.standard_normal(ROWS),
                  "name": pa.array([f"n{v}" for v in rng.integers(0, 10**9, ROWS)]),
                  "flag": rng.integers(0, 2, ROWS) > 0, "small": rng.integers(0, 1 << 30, ROWS).astype(np.int32)})
    path = src / "t.parquet"
    pq.write_table(t, str(path), row_group_size=ROWS // 8)
    with uploaded_repo(tmp, "org/data", src) as server:
        yield server, path, tmp


def _column_bytes(path: Path, name: str) -> int:
    import pyarrow.parquet as pq

    md = pq.ParquetFile(str(path)).metadata
    index = md.schema.names.index(name)
    return sum(md.row_group(r).column(index).total_compressed_size for r in range(md.num_row_groups))


@pytest.mark.parametrize("column", ["id", "x", "name", "flag", "small"])
def test_read_table_of_one_column_fetches_about_that_column(table, column: str) -> None:
    import pyarrow.parquet as pq

    server, path, tmp = table
    md = pq.ParquetFile(str(path)).metadata
    assert md.num_row_groups >= 8 and md.num_columns >= 4
    expected = pq.read_table(str(path), columns=[column])
    need = _column_bytes(path, column)
    worst = 0.0
    for i in range(REPEATS):
        with FreshMount(server, "org/data", tmp, f"{column}-{i}") as fresh:
            got = pq.read_table(str(fresh.m.path / "t.parquet"), columns=[column])
            served = fresh.served()
        assert got.equals(expected)
        worst = max(worst, served)
    assert worst <= 1.3 * need + MiB, (column, need, worst, path.stat().st_size)
