"""`baton upstream add|list|disable|enable|remove`: the client secret is read from an
environment variable or a 0600 file (never argv), stored sealed, and never printed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from tests.support import migrated_store
from tests.upstream.conftest import KEK

from baton.cli import main
from baton.core.keys import key_encryption_key
from baton.core.upstream import open_secret
from baton.store.schema import upstream_providers
from baton.store.sql import SQLStore

SECRET = "upstream-client-secret-never-shown-0123456789"


@pytest.fixture(autouse=True)
def no_baton_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("BATON_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def db(tmp_path: Path) -> str:
    anyio.run(migrated_store(tmp_path / "baton.db").close)
    return f"sqlite:///{tmp_path / 'baton.db'}"


def baton(*args: str, env: dict[str, str] | None = None) -> Result:
    environment = {"BATON_KEY_ENCRYPTION_KEY": KEK, **(env or {})}
    return CliRunner().invoke(main, list(args), env=environment)


def add(db: str, *extra: str, env: dict[str, str] | None = None) -> Result:
    return baton(
        "upstream", "add", "github", "--db", db, "--name", "GitHub",
        "--issuer", "https://id.example.com", "--client-id", "baton-app", *extra, env=env,
    )  # fmt: skip


def stored(db: str) -> dict[str, Any]:
    store = SQLStore.open(db)

    async def read() -> dict[str, Any]:
        try:
            row = await store.inspect(
                lambda conn: conn.execute(select(upstream_providers)).mappings().one()
            )
            return dict(row)
        finally:
            await store.close()

    return anyio.run(read)


def test_add_seals_the_secret_from_the_environment_and_list_never_shows_it(db: str) -> None:
    result = add(db, "--client-secret-env", "GH_SECRET", "--link-by-email", "--json",
                 env={"GH_SECRET": SECRET})  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert SECRET not in result.stdout
    row = stored(db)
    assert SECRET not in json.dumps(row)
    assert open_secret(key_encryption_key(KEK), "github", row["client_secret"]) == SECRET
    assert (row["link_by_email"], row["create_users"]) == (True, False)
    listed = baton("upstream", "list", "--db", db, "--json")
    assert listed.exit_code == 0
    assert SECRET not in listed.stdout
    [shown] = json.loads(listed.stdout)["upstreams"]
    assert shown["id"] == "github" and shown["confidential"] is True
    assert shown["scope"] == "openid email profile"


def test_a_secret_file_must_be_0600(db: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o644)
    refused = add(db, "--client-secret-file", str(secret))
    assert refused.exit_code == 1 and "chmod 600" in refused.stderr
    secret.chmod(0o600)
    assert add(db, "--client-secret-file", str(secret)).exit_code == 0
    assert open_secret(key_encryption_key(KEK), "github", stored(db)["client_secret"]) == SECRET


def test_a_public_client_needs_no_key(db: str) -> None:
    result = CliRunner().invoke(
        main,
        ["upstream", "add", "pub", "--db", db, "--name", "Pub", "--issuer",
         "http://127.0.0.1:9000", "--client-id", "x"],
        env={"BATON_KEY_ENCRYPTION_KEY": ""},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert stored(db)["client_secret"] is None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--issuer", "http://id.example.com"), "https"),
        (("--scope", "email"), "openid"),
        (("--client-secret-env", "UNSET_VARIABLE"), "not set"),
    ],
)
def test_bad_configurations_are_refused(db: str, args: tuple[str, ...], says: str) -> None:
    result = add(db, *args)
    assert result.exit_code == 1, result.stdout
    assert says in result.stderr


def test_a_secret_needs_the_key_encryption_key(db: str) -> None:
    result = CliRunner().invoke(
        main,
        ["upstream", "add", "github", "--db", db, "--name", "GitHub", "--issuer",
         "https://id.example.com", "--client-id", "x", "--client-secret-env", "S"],
        env={"S": SECRET, "BATON_KEY_ENCRYPTION_KEY": ""},
    )  # fmt: skip
    assert result.exit_code == 1 and "BATON_KEY_ENCRYPTION_KEY" in result.stderr


def test_add_twice_disable_enable_remove(db: str) -> None:
    assert add(db).exit_code == 0
    again = add(db)
    assert again.exit_code == 1 and "already exists" in again.stderr
    assert baton("upstream", "disable", "github", "--db", db).exit_code == 0
    assert stored(db)["disabled_at"] is not None
    assert baton("upstream", "enable", "github", "--db", db).exit_code == 0
    assert stored(db)["disabled_at"] is None
    removed = baton("upstream", "remove", "github", "--db", db, "--json")
    assert json.loads(removed.stdout) == {"id": "github", "links_removed": 0}
    missing = baton("upstream", "remove", "github", "--db", db)
    assert missing.exit_code == 1 and "no upstream provider" in missing.stderr
