"""The `baton` command line: every command, its output contract (`--json` is one JSON object on
stdout; errors go to stderr with exit status 1), `--db` versus `BATON_DB`, and the refusal to
work on an unmigrated database. Commands run in-process through Click's CliRunner, except
`serve`, which runs as its own process."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from baton.cli import main
from baton.config import Settings
from baton.core.pairs import IssuedPair, MintedPair
from baton.core.rules import CodeRedemption
from baton.core.tokens import TokenKind, mint
from baton.server.app import create_app
from baton.store.base import Issued, NewCode
from baton.store.sql import SQLStore
from tests.support import serve_until_ready

REDIRECT_URI = "http://127.0.0.1:9000/callback"
SERVE_OPTIONS = (
    "--config",
    "--host",
    "--port",
    "--db",
    "--issuer",
    "--leeway",
    "--access-ttl",
    "--refresh-idle-ttl",
    "--refresh-absolute-ttl",
    "--retry-policy",
    "--workers",
    "--db-pool-size",
    "--db-max-overflow",
    "--sqlite-synchronous",
    "--purge-interval",
    "--retention-days",
    "--access-token-format",
    "--access-token-audience",
    "--signing-alg",
    "--key-encryption-key",
    "--session-key-file",
    "--key-reload-interval",
    "--id-token-lifetime",
    "--login-url",
    "--consent-url",
    "--challenge-ttl",
    "--theme-dir",
    "--password-min-length",
    "--mfa-for-admins",
    "--upstream-timeout",
    "--client-metadata-documents",
    "--client-documents-trusted-hosts",
    "--client-documents-denied-hosts",
    "--client-documents-allow-private",
    "--registration",
    "--registration-token",
    "--registration-expiry",
    "--dynamic-client-scopes",
    "--dynamic-client-resources",
    "--scopes-supported",
    "--rate-limit-address",
    "--rate-limit-client",
    "--rate-limit-login",
    "--redis-url",
    "--trusted-proxies",
    "--log-level",
    "--log-format",
    "--metrics-token",
    "--metrics-public",
    "--metrics-client-series",
    "--signal-flush-interval",
    "--signal-retention",
    "--clock-offset-file",
    "--webhook-url",
    "--fast-paths",
    "--tracing",
)


@pytest.fixture(autouse=True)
def no_baton_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BATON_"):
            monkeypatch.delenv(name)


def baton(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, env=env)


def ok(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    result = baton(*args, input=input, env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def failed(result: Result, *fragments: str) -> None:
    """Exit status 1, nothing on stdout, an `error:` line on stderr naming each fragment."""
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def one_json_object(result: Result) -> dict[str, Any]:
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1, result.stdout
    payload = json.loads(result.stdout)
    assert isinstance(payload, dict)
    return payload


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "baton.db"
    ok("db", "upgrade", "--db", str(path))
    return str(path)


def create_client(db: str, *extra: str, name: str = "app") -> dict[str, Any]:
    return one_json_object(ok("client", "create", "--db", db, "--name", name, "--json", *extra))


def create_user(db: str, username: str) -> int:
    result = ok(
        "user",
        "create",
        "--db",
        db,
        "--username",
        username,
        "--password-stdin",
        "--json",
        input="s3cret passphrase\n",
    )
    user_id: int = one_json_object(result)["id"]
    return user_id


def seed_grant(db: str, client_id: str, user_id: int, scope: str = "read") -> IssuedPair:
    """A grant and its first pair, made the way the token endpoint makes them: a code saved at
    /authorize and redeemed in the store's own transaction."""
    store = SQLStore.open(db)
    code = mint(TokenKind.CODE)
    now = int(time.time())

    async def work() -> IssuedPair:
        try:
            await store.save_code(
                NewCode(code.digest, client_id, user_id, None, scope, None, now, now + 60)
            )
            result = await store.redeem_code(
                code.digest, CodeRedemption(client_id, None, None), MintedPair.new(), now, None
            )
            assert isinstance(result, Issued)
            return result.pair
        finally:
            await store.close()

    return anyio.run(work)


@pytest.fixture
def protocol(db: str) -> Iterator[tuple[TestClient, tuple[str, str]]]:
    """The app on the same database, and a resource server's credentials to introspect with."""
    rs = create_client(db, "--resource-server", name="api")
    app = create_app(Settings(issuer="http://baton.test"), SQLStore.open(db))
    with TestClient(app, base_url="http://baton.test") as http:
        yield http, (rs["client_id"], rs["client_secret"])


def active(protocol: tuple[TestClient, tuple[str, str]], token: str) -> bool:
    http, rs = protocol
    response = http.post("/introspect", data={"token": token}, auth=rs)
    assert response.status_code == 200, response.text
    is_active: bool = response.json()["active"]
    return is_active


# -- db upgrade -----------------------------------------------------------------------------------


def test_db_upgrade_migrates_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    first = ok("db", "upgrade", "--db", f"sqlite:///{path}")
    assert first.stdout.startswith(f"database sqlite:///{path} is at revision ")
    assert path.exists()
    again = ok("db", "upgrade", "--db", str(path))  # a plain path is taken as SQLite
    assert again.stdout.split()[-1] == first.stdout.split()[-1]
    ok("grants", "list", "--db", str(path))  # the schema is current


# -- client create --------------------------------------------------------------------------------


def test_confidential_client_prints_its_secret_once(db: str) -> None:
    result = ok(
        "client",
        "create",
        "--db",
        db,
        "--name",
        "app",
        "--redirect-uri",
        REDIRECT_URI,
        "--scope",
        "read write",
    )
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    client_id = lines["client_id"].strip()
    secret = lines["client_secret"].strip()
    assert client_id.startswith("cl_") and secret.startswith("bat_cs_")
    assert "shown only now" in result.stdout
    assert secret.encode() not in Path(db).read_bytes()  # stored as a digest only
    # The secret works (client_credentials), and nothing prints it again.
    app = create_app(Settings(issuer="http://baton.test"), SQLStore.open(db))
    with TestClient(app, base_url="http://baton.test") as http:
        token = http.post(
            "/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        assert token.status_code == 200, token.text
    assert secret not in ok("grants", "list", "--db", db, "--json").stdout


def test_public_client_has_no_secret(db: str) -> None:
    text = ok(
        "client", "create", "--db", db, "--name", "spa", "--public", "--redirect-uri", REDIRECT_URI
    ).stdout
    assert "client_id:" in text and "secret" not in text
    payload = create_client(db, "--public", "--redirect-uri", REDIRECT_URI)
    assert payload["public"] is True
    assert "client_secret" not in payload


def test_client_create_json_is_one_object(db: str) -> None:
    payload = create_client(
        db,
        "--redirect-uri",
        REDIRECT_URI,
        "--redirect-uri",
        "https://app.example/cb",
        "--scope",
        "write read",
    )
    assert payload["client_id"].startswith("cl_")
    assert payload["client_secret"].startswith("bat_cs_")
    assert payload["redirect_uris"] == [REDIRECT_URI, "https://app.example/cb"]
    assert payload["scope"] == "read write"
    assert payload["public"] is False and payload["resource_server"] is False
    assert payload["name"] == "app"


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("http://127.0.0.1:9000/callback#frag", "fragment"),
        ("https://app.example/cb#", "fragment"),
        ("http://app.example/callback", "https"),
        ("/callback", "absolute"),
        ("https:///callback", "no host"),
        # Issue 21 L4: schemes a browser runs or opens, never a place to send a code.
        ("javascript:alert(document.domain)//", "private-use scheme"),
        ("data:text/html,<script>alert(1)</script>", "private-use scheme"),
        ("https://app.example/cb path", "printable ASCII"),
        ("data:text/html;base64,PHNjcmlwdD4=", "private-use scheme"),
        ("file:///etc/passwd", "private-use scheme"),
        ("myapp:/callback", "reverse-DNS"),  # private-use, but not reverse-DNS (RFC 8252 §7.1)
        ("http://localhost:9000/callback", "not localhost"),  # RFC 8252 §8.3
        ("https://127.0.0.1@evil.example/cb", "user information"),
    ],
)
def test_client_create_refuses_a_bad_redirect_uri(db: str, uri: str, says: str) -> None:
    result = baton("client", "create", "--db", db, "--name", "x", "--redirect-uri", uri, "--json")
    failed(result, says)
    (count,) = _sql(db, "SELECT count(*) FROM clients")
    assert count == (0,)


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb",
        "http://127.0.0.1:8123/cb",
        "http://[::1]:8123/cb",
        "com.example.app:/oauth2redirect",  # RFC 8252 §7.1
    ],
)
def test_client_create_accepts_the_three_kinds_of_redirect_uri(db: str, uri: str) -> None:
    assert create_client(db, "--public", "--redirect-uri", uri)["redirect_uris"] == [uri]


def test_pkce_is_required_unless_a_confidential_client_opts_out(db: str) -> None:
    assert create_client(db, "--redirect-uri", REDIRECT_URI)["require_pkce"] is True
    optional = create_client(db, "--redirect-uri", REDIRECT_URI, "--pkce-optional")
    assert optional["require_pkce"] is False
    public = ("--public", "--redirect-uri", REDIRECT_URI, "--pkce-optional")
    failed(baton("client", "create", "--db", db, "--name", "x", *public), "PKCE")
    (row,) = _sql(db, "SELECT count(*) FROM clients WHERE require_pkce")
    assert row == (1,)


def test_remember_consent_only_for_public_clients_on_https(db: str) -> None:
    claimed = "https://app.example/oauth2/callback"
    public = create_client(db, "--public", "--redirect-uri", claimed, "--remember-consent")
    assert public["remember_consent"] is True
    for args, says in [
        (("--public", "--redirect-uri", REDIRECT_URI), "https"),  # loopback: any local program
        (("--public", "--redirect-uri", claimed, "--redirect-uri", "com.example.app:/cb"), "https"),
        (("--public",), "https"),  # no redirect URI at all
        (("--redirect-uri", claimed), "public clients only"),
    ]:
        result = baton("client", "create", "--db", db, "--name", "x", *args, "--remember-consent")
        failed(result, says)
    (row,) = _sql(db, "SELECT count(*) FROM clients")
    assert row == (1,)


def test_client_create_other_refusals(db: str) -> None:
    failed(baton("client", "create", "--db", db, "--name", "x", "--public", "--resource-server"))
    failed(baton("client", "create", "--db", db, "--name", "x", "--scope", 'bad"scope'))


# -- user create ----------------------------------------------------------------------------------


def test_user_create_reads_the_password_from_stdin(db: str) -> None:
    result = ok(
        "user",
        "create",
        "--db",
        db,
        "--username",
        "alice",
        "--password-stdin",
        input="correct horse\n",
    )
    assert result.stdout == "created user alice\n"
    ((stored,),) = _sql(db, "SELECT password_hash FROM users WHERE username = 'alice'")
    assert stored.startswith("$argon2")
    # The password is what was typed (without its newline): alice can sign in with it.
    ok("client", "create", "--db", db, "--name", "app", "--redirect-uri", REDIRECT_URI)
    app = create_app(Settings(issuer="http://baton.test"), SQLStore.open(db))
    with TestClient(app, base_url="http://baton.test", follow_redirects=False) as http:
        page = http.get("/login")
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        signed = http.post(
            "/login", data={"csrf": csrf, "username": "alice", "password": "correct horse"}
        )
        assert signed.status_code == 303, signed.text


def test_user_create_with_password_option_and_json(db: str) -> None:
    payload = one_json_object(
        ok(
            "user",
            "create",
            "--db",
            db,
            "--username",
            "bob",
            "--password",
            "a fine passphrase",
            "--json",
        )
    )
    assert payload["username"] == "bob" and isinstance(payload["id"], int)


def test_user_create_admin_may_enter_the_console(db: str) -> None:
    payload = one_json_object(
        ok(
            "user",
            "create",
            "--db",
            db,
            "--username",
            "root",
            "--password",
            "a fine passphrase",
            "--admin",
            "--json",
        )
    )
    assert payload["admin"] is True
    assert _sql(db, "SELECT is_admin FROM users WHERE username = 'root'") == [(1,)]
    plain = ok("user", "create", "--db", db, "--username", "bob", "--password", "a fine passphrase")
    assert plain.stdout == "created user bob\n"
    assert _sql(db, "SELECT is_admin FROM users WHERE username = 'bob'") == [(0,)]


def test_duplicate_user_exits_1(db: str) -> None:
    create_user(db, "alice")
    result = baton(
        "user",
        "create",
        "--db",
        db,
        "--username",
        "alice",
        "--password-stdin",
        input="another passphrase\n",
    )
    failed(result, "alice", "already exists")


@pytest.mark.parametrize(
    "options", [["--password", "pw", "--password-stdin"], []], ids=["both", "neither"]
)
def test_user_create_needs_exactly_one_password_option(db: str, options: list[str]) -> None:
    result = baton("user", "create", "--db", db, "--username", "carol", *options, input="pw\n")
    failed(result, "--password", "--password-stdin")
    assert _sql(db, "SELECT count(*) FROM users") == [(0,)]


def test_empty_password_is_refused(db: str) -> None:
    failed(baton("user", "create", "--db", db, "--username", "dan", "--password-stdin", input="\n"))


# -- grants ---------------------------------------------------------------------------------------


def test_grants_list_filters_and_json(db: str) -> None:
    app_a = create_client(db, "--scope", "read write", "--redirect-uri", REDIRECT_URI, name="a")
    app_b = create_client(db, "--scope", "read", "--redirect-uri", REDIRECT_URI, name="b")
    alice, bob = create_user(db, "alice"), create_user(db, "bob")
    g1 = seed_grant(db, app_a["client_id"], alice).grant_id
    g2 = seed_grant(db, app_b["client_id"], alice).grant_id
    g3 = seed_grant(db, app_a["client_id"], bob).grant_id

    def listed(*filters: str) -> set[str]:
        payload = one_json_object(ok("grants", "list", "--db", db, "--json", *filters))
        return {row["grant_id"] for row in payload["grants"]}

    assert listed() == {g1, g2, g3}
    assert listed("--client", app_a["client_id"]) == {g1, g3}
    assert listed("--user", "alice") == {g1, g2}
    assert listed("--user", "bob", "--client", app_a["client_id"]) == {g3}
    assert listed("--user", "nobody") == set()

    rows = one_json_object(ok("grants", "list", "--db", db, "--json", "--user", "bob"))["grants"]
    (row,) = rows
    assert row["client_id"] == app_a["client_id"]
    assert row["user"] == "bob"
    assert row["scope"] == "read"
    assert row["status"] == "active"
    assert row["revoked_at"] is None
    assert row["refresh_tokens_issued"] == 1

    text = ok("grants", "list", "--db", db).stdout.splitlines()
    assert text[0].split() == ["GRANT", "CLIENT", "USER", "STATUS", "TOKENS"]
    assert len(text) == 4
    assert any(g3 in line and "bob" in line and "active" in line for line in text)


def test_grants_revoke_kills_every_token(
    db: str, protocol: tuple[TestClient, tuple[str, str]]
) -> None:
    app_a = create_client(db, "--scope", "read", "--redirect-uri", REDIRECT_URI)
    alice = create_user(db, "alice")
    pair = seed_grant(db, app_a["client_id"], alice)
    other = seed_grant(db, app_a["client_id"], alice)
    assert pair.refresh_token is not None
    assert active(protocol, pair.access_token) and active(protocol, pair.refresh_token)

    failed(baton("grants", "revoke", "--db", db, "grt_nosuchgrant"), "grt_nosuchgrant")

    result = ok("grants", "revoke", "--db", db, pair.grant_id)
    assert result.stdout == f"revoked grant {pair.grant_id}\n"
    assert not active(protocol, pair.access_token)
    assert not active(protocol, pair.refresh_token)
    assert active(protocol, other.access_token)  # only that grant

    http, _ = protocol
    refused = http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": pair.refresh_token},
        auth=(app_a["client_id"], app_a["client_secret"]),
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"

    again = one_json_object(ok("grants", "revoke", "--db", db, pair.grant_id, "--json"))
    assert again == {"grant_id": pair.grant_id, "revoked": False}
    rows = one_json_object(ok("grants", "list", "--db", db, "--json"))["grants"]
    (row,) = [r for r in rows if r["grant_id"] == pair.grant_id]
    assert row["status"] == "revoked (admin)"
    assert isinstance(row["revoked_at"], int)


# -- unmigrated databases, --db and BATON_DB ------------------------------------------------------

COMMANDS_ON_A_DATABASE = {
    "client create": (["client", "create", "--name", "x", "--redirect-uri", REDIRECT_URI], None),
    "user create": (
        ["user", "create", "--username", "x", "--password-stdin"],
        "a fine passphrase\n",
    ),
    "grants list": (["grants", "list"], None),
    "grants revoke": (["grants", "revoke", "grt_x"], None),
    "user signout": (["user", "signout", "--username", "x"], None),
}


@pytest.mark.parametrize("command", list(COMMANDS_ON_A_DATABASE))
def test_every_command_refuses_an_unmigrated_database(tmp_path: Path, command: str) -> None:
    args, stdin = COMMANDS_ON_A_DATABASE[command]
    path = str(tmp_path / "empty.db")
    failed(baton(*args, "--db", path, input=stdin), "baton db upgrade", path)


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    path = str(tmp_path / "empty.db")
    result = subprocess.run(
        [sys.executable, "-m", "baton.cli", "serve", "--port", "1", "--db", path],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("BATON_")},
        check=False,
    )
    assert result.returncode == 1, result
    assert "baton db upgrade" in result.stderr and path in result.stderr
    assert result.stdout == ""


def test_baton_db_environment_variable_and_the_flag_wins(tmp_path: Path) -> None:
    env_db, flag_db = str(tmp_path / "env.db"), str(tmp_path / "flag.db")
    ok("db", "upgrade", env={"BATON_DB": env_db})
    assert Path(env_db).exists()
    ok(
        "user",
        "create",
        "--username",
        "alice",
        "--password",
        "a fine passphrase",
        env={"BATON_DB": env_db},
    )
    assert _sql(env_db, "SELECT username FROM users") == [("alice",)]

    # The flag wins: the (unmigrated) flag database is the one refused ...
    failed(baton("grants", "list", "--db", flag_db, env={"BATON_DB": env_db}), flag_db)
    # ... and once migrated, the one written to.
    ok("db", "upgrade", "--db", flag_db, env={"BATON_DB": env_db})
    ok(
        "user",
        "create",
        "--db",
        flag_db,
        "--username",
        "bob",
        "--password",
        "a fine passphrase",
        env={"BATON_DB": env_db},
    )
    assert _sql(flag_db, "SELECT username FROM users") == [("bob",)]
    assert _sql(env_db, "SELECT username FROM users") == [("alice",)]


# -- serve ---------------------------------------------------------------------------------------


def test_serve_help_lists_every_option() -> None:
    text = ok("serve", "--help").stdout
    for option in SERVE_OPTIONS:
        assert option in text, option
    for value in ("replay", "fork", "strict", "BATON_DB"):
        assert value in text


def test_serve_docs_options_table_matches_the_help() -> None:
    """Every option of `baton serve` has a row in docs/configuration.md's Options table, and no
    more."""
    page = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    table = page.split("## Options", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `--")}
    command = main.commands["serve"]
    options = {o for p in command.params for o in p.opts if o.startswith("--")}
    assert rows == options == set(SERVE_OPTIONS)


def test_serve_trusted_proxies_must_be_networks(db: str) -> None:
    failed(baton("serve", "--db", db, "--trusted-proxies", "10.0.0.0/8,proxy"), "'proxy'")
    env = {"BATON_TRUSTED_PROXIES": "not-a-network"}
    failed(baton("serve", "--db", db, env=env), "--trusted-proxies")


def test_serve_refuses_an_issuer_clients_could_not_trust(db: str) -> None:
    # RFC 8414 §2: https, no query or fragment; http only to this machine.
    failed(baton("serve", "--db", db, "--issuer", "http://auth.example"), "must use https")
    failed(baton("serve", "--db", db, "--issuer", "https://auth.example/?a=1"), "no query")
    failed(baton("serve", "--db", db, "--issuer", "https://auth.example#x"), "no query")
    failed(baton("serve", "--db", db, "--issuer", "https://u:p@auth.example"), "user information")
    env = {"BATON_ISSUER": "ftp://auth.example"}
    failed(baton("serve", "--db", db, env=env), "must use https")


def test_serve_off_loopback_needs_an_issuer(db: str) -> None:
    # http://0.0.0.0:8000 is no URL a client can reach or trust: the issuer must be given.
    failed(baton("serve", "--db", db, "--host", "0.0.0.0"), "--issuer", "0.0.0.0")
    failed(baton("serve", "--db", db, "--host", "10.1.2.3"), "--issuer")
    # Given, it passes this check, and the next one speaks (a webhook URL that is no http).
    given = ["--host", "0.0.0.0", "--issuer", "https://auth.example/", "--webhook-url", "ftp://x/"]
    failed(baton("serve", "--db", db, *given), "--webhook-url must be an http or https URL")


def test_serve_refuses_a_default_audience_that_names_a_registered_api(db: str) -> None:
    # Tokens of grants that hold no resource carry the default audience: naming an API there
    # would hand every such token to that API, past its audience restriction.
    api = "https://notes.example"
    ok("client", "create", "--db", db, "--name", "api", "--resource-server", "--resource-uri", api)
    failed(baton("serve", "--db", db, "--access-token-audience", api), "registered resource")


def test_serve_webhooks_need_a_secret_from_the_environment(db: str) -> None:
    """The signing secret is never an argument; without it (or too short) serve refuses."""
    url = "http://127.0.0.1:9/hook"
    failed(baton("serve", "--db", db, "--webhook-url", url), "BATON_WEBHOOK_SECRET")
    short = {"BATON_WEBHOOK_SECRET": "short"}
    failed(baton("serve", "--db", db, "--webhook-url", url, env=short), "BATON_WEBHOOK_SECRET")
    secret = {"BATON_WEBHOOK_SECRET": "a-long-enough-signing-secret"}
    failed(baton("serve", "--db", db, "--webhook-url", "ftp://x/", env=secret), "http or https")


def test_serve_options_from_environment_flag_wins_and_first_steps(db: str) -> None:
    """On an empty database `serve` prints the commands that create a first user and client;
    BATON_LEEWAY is read, and --retry-policy beats BATON_RETRY_POLICY."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env |= {"BATON_LEEWAY": "7", "BATON_RETRY_POLICY": "strict", "BATON_PORT": "0"}
    text = serve_until_ready(["--db", db, "--retry-policy", "fork"], env)
    assert "baton user create" in text and "baton client create" in text, text
    assert "(retry policy fork, leeway 7s)" in text, text


def _sql(db: str, query: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        rows: list[tuple[Any, ...]] = conn.execute(query).fetchall()
        return rows
    finally:
        conn.close()


# -- signing keys ----------------------------------------------------------------------------------

KEK = "a key-encryption key of 32+ characters"


def test_keys_rotate_publishes_ahead_and_retires_the_old_key(tmp_path: Path) -> None:
    db = str(tmp_path / "baton.db")
    ok("db", "upgrade", "--db", db)
    refused = baton("keys", "rotate", "--db", db)
    assert refused.exit_code == 1
    assert "BATON_KEY_ENCRYPTION_KEY" in refused.stderr
    first = json.loads(
        ok("keys", "rotate", "--db", db, "--json", env={"BATON_KEY_ENCRYPTION_KEY": KEK}).stdout
    )
    assert first["old_keys_retire_at"] is None  # the first key signs at once
    second = json.loads(
        ok(
            "keys",
            "rotate",
            "--db",
            db,
            "--alg",
            "EdDSA",
            "--publish-ahead",
            "300",
            "--max-access-ttl",
            "900",
            "--max-id-token-ttl",
            "600",
            "--key-encryption-key",
            KEK,
            "--json",
        ).stdout
    )
    assert second["alg"] == "Ed25519"  # EdDSA, RFC 8037's name, makes an RFC 9864 Ed25519 key
    assert second["activates_at"] >= first["activates_at"] + 300
    assert second["old_keys_retire_at"] == second["activates_at"] + 900
    listed = json.loads(ok("keys", "list", "--db", db, "--json").stdout)["keys"]
    assert [(k["kid"], k["alg"]) for k in listed] == [
        (first["kid"], "ES256"),
        (second["kid"], "Ed25519"),
    ]
    assert listed[0]["retires_at"] == second["old_keys_retire_at"]
    assert listed[1]["retires_at"] is None
    wrong = baton("keys", "rotate", "--db", db, "--key-encryption-key", "x" * 40)
    assert wrong.exit_code == 1
    assert "wrong key-encryption key" in wrong.stderr
    assert len(json.loads(ok("keys", "list", "--db", db, "--json").stdout)["keys"]) == 2


def test_serve_with_jwt_needs_a_key_encryption_key(tmp_path: Path) -> None:
    db = str(tmp_path / "baton.db")
    ok("db", "upgrade", "--db", db)
    result = baton("serve", "--db", db, "--access-token-format", "jwt")
    assert result.exit_code == 1
    assert "key-encryption key" in result.stderr
