"""`baton user mfa-require`, `mfa-reset` and `mfa-status` (baton.cli.mfa), in-process through
Click's CliRunner against a migrated SQLite file."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result

from baton.cli import main
from baton.core import totp
from baton.core.keys import key_encryption_key
from tests.support import migrated_store

KEK = "cli-test-key-encryption-key-32-chars!!"


@pytest.fixture(autouse=True)
def no_baton_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BATON_"):
            monkeypatch.delenv(name)


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A migrated database with alice (enrolled, 10 recovery codes) and bob (not enrolled)."""
    path = tmp_path / "baton.db"
    store = migrated_store(path)

    async def fill() -> None:
        alice = await store.create_user("alice", "!", 0)
        await store.create_user("bob", "!", 0)
        sealed = totp.seal_secret(totp.new_secret(), key_encryption_key(KEK), alice.id)
        digests = totp.recovery_digests(totp.new_recovery_codes(), key_encryption_key(KEK))
        assert await store.enrol_totp(alice.id, sealed, 1, digests, 0, None)
        await store.close()

    anyio.run(fill)
    return str(path)


def baton(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def as_json(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    payload = json.loads(result.stdout)
    assert isinstance(payload, dict)
    return payload


def test_status_says_enrolment_requirement_and_codes_left(db: str) -> None:
    alice = as_json(baton("user", "mfa-status", "--db", db, "alice", "--json"))
    assert alice == {
        "username": "alice",
        "enrolled": True,
        "required": False,
        "admin": False,
        "recovery_codes_left": 10,
    }
    text = baton("user", "mfa-status", "--db", db, "bob")
    assert text.exit_code == 0
    assert "enrolled (TOTP):     no" in text.stdout
    assert "recovery codes left: 0" in text.stdout


def test_require_sets_the_flag_and_off_lifts_it(db: str) -> None:
    env = {"BATON_KEY_ENCRYPTION_KEY": KEK}
    done = baton("user", "mfa-require", "--db", db, "bob", "--json", env=env)
    payload = as_json(done)
    assert payload["required"] is True and "warning" not in payload
    assert done.stderr == ""
    assert as_json(baton("user", "mfa-status", "--db", db, "bob", "--json"))["required"] is True
    lifted = as_json(baton("user", "mfa-require", "--db", db, "bob", "--off", "--json"))
    assert lifted["required"] is False
    with sqlite3.connect(db) as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY id")]
    assert actions[-2:] == ["user.mfa_require", "user.mfa_require"]


def test_require_without_a_key_encryption_key_says_the_user_cannot_enrol(db: str) -> None:
    done = baton("user", "mfa-require", "--db", db, "bob")
    assert done.exit_code == 0
    assert "BATON_KEY_ENCRYPTION_KEY is not set" in done.stderr
    assert "cannot enrol, and so cannot sign in" in done.stderr
    # Already enrolled: nothing to warn about (recovery codes work without the key, and the
    # server needs it for codes anyway, which its own page says).
    assert baton("user", "mfa-require", "--db", db, "alice").stderr == ""


def test_reset_forgets_the_secret_and_the_codes(db: str) -> None:
    payload = as_json(baton("user", "mfa-reset", "--db", db, "alice", "--json"))
    assert payload["enrolled"] is False and payload["recovery_codes_left"] == 0
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT totp_secret, totp_last_step FROM users WHERE username = 'alice'"
        ).fetchone()
        codes = conn.execute("SELECT count(*) FROM recovery_codes").fetchone()[0]
        audit = conn.execute(
            "SELECT actor, target_id, detail FROM audit_log WHERE action = 'user.mfa_reset'"
        ).fetchall()
    assert row == (None, None) and codes == 0
    assert audit == [("cli", "alice", None)]
    status = as_json(baton("user", "mfa-status", "--db", db, "alice", "--json"))
    assert status["enrolled"] is False


@pytest.mark.parametrize("command", ["mfa-require", "mfa-reset", "mfa-status"])
def test_an_unknown_user_is_an_error(db: str, command: str) -> None:
    result = baton("user", command, "--db", db, "nobody")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "error: no user 'nobody'\n"
