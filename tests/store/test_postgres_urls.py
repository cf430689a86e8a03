"""A PostgreSQL URL as libpq, psql and pg_dump write it (`?sslmode=`) reaches asyncpg, which
calls the same setting `ssl`; and back: the URL `baton db backup` prints for pg_dump."""

from __future__ import annotations

import logging

import anyio
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from baton.cli import main
from baton.store.engines import PoolSettings, PostgresRunner, libpq_url, normalize_url


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def test_sslmode_in_the_url_connects(
    postgres_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = with_query(postgres_database, "sslmode=disable")

    async def run() -> int:
        runner = PostgresRunner(normalize_url(db), PoolSettings(size=0))
        try:
            await runner.wait_for_feed(0.01)  # the LISTEN connection, through asyncpg's DSN
            return await runner.read(lambda conn: int(conn.execute(text("SELECT 42")).scalar_one()))
        finally:
            await runner.close()

    with caplog.at_level(logging.WARNING):
        assert anyio.run(run) == 42
    assert "cannot LISTEN" not in caplog.text
    result = CliRunner().invoke(main, ["db", "upgrade", "--check", "--db", db])
    assert result.exit_code in (0, 1), result.output
    assert "TypeError" not in result.output
    assert "revision" in result.output


def test_asyncpg_s_ssl_is_libpq_s_sslmode_and_asyncpg_s_own_parameters_are_left_out() -> None:
    url = normalize_url(
        "postgresql://app@db.example/baton?ssl=verify-full&sslrootcert=/etc/ca.pem"
        "&prepared_statement_cache_size=0&application_name=baton"
    )
    assert libpq_url(url).render_as_string() == (
        "postgresql://app@db.example/baton?application_name=baton&sslmode=verify-full"
        "&sslrootcert=%2Fetc%2Fca.pem"
    )
