"""The PostgreSQL test service: starts from the Debian server packages, takes psycopg connections, keeps its
data across a restart, and is gone after the block (process and directory)."""
from __future__ import annotations

from pathlib import Path

import pytest

from xetfs.osutil.process import pid_alive
from xetfs.testing.services import postgres
from xetfs.testing.deps import required

psycopg = required("psycopg")


def test_postgres_starts_serves_and_stops(tmp_path: Path) -> None:
    with postgres(tmp_path) as pg:
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("select current_setting('server_version_num')::int").fetchone()[0] >= 150000
            conn.execute("create table t (k text primary key, v bytea)")
            conn.execute("insert into t values ('a', %s)", (b"\x00\x01",))
        first = pg.pid()
        assert first is not None and pid_alive(first)
        pg.stop()
        assert not pid_alive(first)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.dsn, connect_timeout=2)
        pg.start()
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("select v from t where k = 'a'").fetchone()[0] == b"\x00\x01"
        second, root = pg.pid(), pg.root
        assert second is not None and pid_alive(second)
    assert not pid_alive(second), "the block stops the server"
    assert not root.exists(), "and removes its directory"
    assert "database system is shut down" in (tmp_path / "postgres.log").read_text()
