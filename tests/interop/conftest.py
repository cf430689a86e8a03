"""Real `baton serve` processes with OpenID Connect on, for relying-party libraries end to end.

The servers' databases are seeded with the real command line (`baton db upgrade`, `baton user
create`, `baton user set --email`, `baton client create --json` with the OIDC flags; several
commands in one process, cli_batch.py, since each `baton` process spends a second importing):
one template per run, copied for each server. `baton serve` then runs on a free port of
127.0.0.1 with a key-encryption key in its environment (never on its command line), which turns
OpenID Connect on. One shared server (session scope) serves the relying-party and negative tests;
a test that needs options of its own starts a server for its module (`servers`). The relying
parties go through the real login and consent pages as a browser would (`Browser`), with the
CSRF tokens those pages carry. When a test fails, the stderr of the servers it used is attached
to the report."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
import requests  # type: ignore[import-untyped,unused-ignore]

from tests.e2e.conftest import free_port
from tests.node import npm_peer

USERNAME = "alice"
PASSWORD = "correct horse battery staple"
EMAIL = "alice@example.org"
KEK = "interop tests' key-encryption key, 32+ characters long"
OIDC_SCOPE = "openid profile email offline_access"
START_TIMEOUT = 30.0

BATON = [sys.executable, "-m", "baton.cli"]
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ClientSpec:
    """A client to register: `baton client create --name NAME --json FLAGS...`."""

    name: str
    redirect_uris: tuple[str, ...]
    scope: str = OIDC_SCOPE
    public: bool = False
    flags: tuple[str, ...] = ()

    def arguments(self) -> list[str]:
        args = ["--name", self.name, "--scope", self.scope, *self.flags]
        for uri in self.redirect_uris:
            args += ["--redirect-uri", uri]
        if self.public:
            args.append("--public")
        return args


@dataclass(frozen=True)
class Registered:
    client_id: str
    client_secret: str | None
    redirect_uri: str

    @property
    def basic(self) -> tuple[str, str]:
        assert self.client_secret is not None
        return (self.client_id, self.client_secret)


@dataclass
class OidcServer:
    url: str
    db: Path
    process: subprocess.Popen[bytes]
    log: Path
    clients: dict[str, Registered] = field(default_factory=dict)
    email_set: str | None = None  # why `baton user set --email` failed, None if it worked
    refused: dict[str, str] = field(default_factory=dict)  # client name: why it is missing

    @property
    def issuer(self) -> str:
        return self.url

    def client(self, name: str) -> Registered:
        """The registered client; fails the test that needs it if `client create` refused it
        (e.g. an OIDC flag not there yet), without failing the module's other tests."""
        if name in self.refused:
            pytest.fail(f"client {name!r} could not be created: {self.refused[name]}")
        return self.clients[name]

    def discovery(self) -> dict[str, Any]:
        response = httpx.get(self.url + "/.well-known/openid-configuration")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def jwks(self) -> dict[str, Any]:
        response = httpx.get(self.discovery()["jwks_uri"])
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        from tests.secrets_scan import find_secrets

        leaked = find_secrets(self.stderr())
        assert not leaked, f"baton serve logged secrets: {leaked}"


@dataclass
class Prepared:
    db: Path
    clients: dict[str, Registered]
    refused: dict[str, str]
    email_problem: str | None


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


def cli_batch(*calls: tuple[list[str], str | None]) -> list[Ran]:
    """`baton ARGS` for each (ARGS, STDIN) of `calls`, in one process (cli_batch.py)."""
    payload = json.dumps([{"args": args, "stdin": stdin} for args, stdin in calls])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "tests.interop.cli_batch"],
        input=payload,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=ROOT,
    )
    if done.returncode != 0:
        pytest.fail(f"the CLI batch failed:\n{done.stderr}")
    return [Ran(r["code"], r["stdout"], r["stderr"]) for r in json.loads(done.stdout)]


@functools.cache
def _template(base: Path) -> tuple[Path, str | None]:
    """The database every server starts from, made once per run: migrated, with alice (email
    and name set by `baton user set`); and why setting the email failed, if it did."""
    db = base / "interop-template" / "baton.db"
    db.parent.mkdir(parents=True)
    upgrade, create, user_set = cli_batch(
        (["db", "upgrade", "--db", str(db)], None),
        (
            ["user", "create", "--db", str(db), "--username", USERNAME, "--password-stdin"],
            PASSWORD + "\n",
        ),
        # `baton user set` (issue 24): the email and profile claims of userinfo and ID tokens.
        (
            [
                "user",
                "set",
                "--db",
                str(db),
                USERNAME,
                "--email",
                EMAIL,
                "--email-verified",
                "--name",
                "Alice Liddell",
            ],
            None,
        ),
    )
    for step, ran in (("db upgrade", upgrade), ("user create", create)):
        if ran.code != 0:
            pytest.fail(f"baton {step} exited {ran.code}:\n{ran.stderr}")
    if user_set.code != 0:
        return db, f"baton user set exited {user_set.code}: {user_set.stderr.strip()}"
    return db, None


def prepare_database(directory: Path, clients: list[ClientSpec]) -> Prepared:
    directory.mkdir(parents=True, exist_ok=True)
    template, email_problem = _template(directory.parent)
    db = directory / "baton.db"
    for suffix in ("", "-wal", "-shm"):
        source = template.with_name(template.name + suffix)
        if source.exists():
            shutil.copyfile(source, db.with_name(db.name + suffix))
    registered: dict[str, Registered] = {}
    refused: dict[str, str] = {}
    made = cli_batch(
        *(
            (["client", "create", "--db", str(db), "--json", *spec.arguments()], None)
            for spec in clients
        )
    )
    for spec, ran in zip(clients, made, strict=True):
        if ran.code != 0:
            refused[spec.name] = f"exited {ran.code}: {ran.stderr.strip()}"
            continue
        payload = json.loads(ran.stdout)  # --json: exactly one JSON object on stdout
        registered[spec.name] = Registered(
            payload["client_id"], payload.get("client_secret"), spec.redirect_uris[0]
        )
    return Prepared(db, registered, refused, email_problem)


def start_oidc_server(
    directory: Path,
    clients: list[ClientSpec],
    env: Mapping[str, str] | None = None,
    **options: object,
) -> OidcServer:
    """A migrated, seeded database in `directory` and `baton serve` on it, OIDC on; `env` is
    added to `baton serve`'s environment."""
    prepared = prepare_database(directory, clients)
    db = prepared.db
    options.setdefault("rate_limit_login", 0)  # many sign-ins a second from one address
    environment = {**os.environ, **(env or {}), "BATON_KEY_ENCRYPTION_KEY": KEK}
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    for _attempt in range(3):
        port = free_port()
        args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(db)]
        for name, value in options.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        log = directory / f"serve-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*BATON, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        server = OidcServer(
            f"http://127.0.0.1:{port}",
            db,
            process,
            log,
            prepared.clients,
            prepared.email_problem,
            prepared.refused,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(server.url + "/.well-known/oauth-authorization-server").is_success:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        server.stop()
        if "address already in use" not in server.stderr().lower():
            break
    pytest.fail(f"baton serve did not start:\n{server.stderr()}")


# The clients of the shared server (one server for the relying-party and negative tests).
OPENID_CLIENT_URI = "http://127.0.0.1:9101/openid-client/callback"
OPENID_CLIENT_SIGNED_OUT = "http://127.0.0.1:9101/openid-client/signed-out"
AUTHLIB_URI = "http://127.0.0.1:9102/authlib/callback"
REQUESTS_OAUTH2CLIENT_URI = "http://127.0.0.1:9103/requests-oauth2client/callback"
NEGATIVE_URI = "http://127.0.0.1:9104/negative/callback"
REMEMBERING_URI = "http://127.0.0.1:9105/remembering/callback"
NONCE_URI = "http://127.0.0.1:9106/nonce/callback"
NATIVE_LOOPBACK_URI = "http://127.0.0.1/native/callback"  # any port (RFC 8252 §7.3)
NATIVE_SCHEME_URI = "org.example.baton-interop:/callback"  # private-use scheme (§7.1)
SHARED_CLIENTS = [
    ClientSpec(
        "openid-client",
        (OPENID_CLIENT_URI,),
        flags=("--post-logout-redirect-uri", OPENID_CLIENT_SIGNED_OUT),
    ),
    ClientSpec(
        "openid-client-Ed25519",
        (OPENID_CLIENT_URI,),
        flags=(
            "--id-token-alg",
            "Ed25519",
            "--post-logout-redirect-uri",
            OPENID_CLIENT_SIGNED_OUT,
        ),
    ),
    ClientSpec("authlib", (AUTHLIB_URI,)),
    ClientSpec("authlib-ES256", (AUTHLIB_URI,), flags=("--id-token-alg", "ES256")),
    ClientSpec("requests-oauth2client", (REQUESTS_OAUTH2CLIENT_URI,)),
    ClientSpec(
        "requests-oauth2client-pairwise",
        (REQUESTS_OAUTH2CLIENT_URI,),
        # A loopback redirect URI is no sector (RFC 8252 §7.3): the client names its own.
        flags=(
            "--subject-type",
            "pairwise",
            "--sector-identifier-uri",
            "https://requests-oauth2client.example/sector.json",
        ),
    ),
    ClientSpec("negative", (NEGATIVE_URI,)),
    ClientSpec("remembering", (REMEMBERING_URI,)),  # confidential: its consent is remembered
    ClientSpec("nonce", (NONCE_URI,), flags=("--require-nonce",)),
    ClientSpec("native", (NATIVE_LOOPBACK_URI, NATIVE_SCHEME_URI), public=True),
]

_MODULE_SERVERS: dict[str, list[OidcServer]] = {}
_SHARED: list[OidcServer] = []


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcServer]:
    """One server (default leeway) for every test that needs no option of its own."""
    server = start_oidc_server(tmp_path_factory.mktemp("baton-shared"), SHARED_CLIENTS)
    _SHARED.append(server)
    try:
        yield server
    finally:
        server.stop()
        _SHARED.remove(server)


@pytest.fixture(scope="module")
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A factory for the module's servers: `servers(clients, leeway=1)`; stopped at its end."""
    started: list[OidcServer] = []
    _MODULE_SERVERS[request.module.__name__] = started

    def start(clients: list[ClientSpec], **options: object) -> OidcServer:
        server = start_oidc_server(tmp_path_factory.mktemp("baton"), clients, None, **options)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
        _MODULE_SERVERS.pop(request.module.__name__, None)


@pytest.fixture(scope="session")
def mcp_scenario(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The MCP end-to-end scenario (tests/interop/mcp_scenario.py), run once for both MCP test
    modules: one Baton and MCP server for the Python and TypeScript SDKs' clients at once."""
    from tests.interop.mcp_scenario import run

    return run(tmp_path_factory)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    module = getattr(item, "module", None)
    if report.failed and module is not None:
        for server in [*_SHARED, *_MODULE_SERVERS.get(module.__name__, [])]:
            report.sections.append((f"baton serve {server.url} (stderr)", server.stderr()[-20000:]))
    return report


# -- the login and consent pages, as a browser goes through them ---------------------------------


class _Forms(HTMLParser):
    """The page's first form: its action and what a browser would post (hidden fields, checked
    boxes and radios, text values), and the submit buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(
                {"action": a.get("action", ""), "fields": [], "buttons": [], "boxes": []}
            )
            return
        if not self.forms:
            return
        form = self.forms[-1]
        kind = a.get("type", "text" if tag == "input" else "submit").lower()
        if tag == "input" and kind in ("checkbox", "radio"):
            form["boxes"].append((a.get("name", ""), a.get("value", "on"), "checked" in a))
            if "checked" in a:
                form["fields"].append((a.get("name", ""), a.get("value", "on")))
        elif tag == "input" and kind not in ("submit", "button", "image"):
            form["fields"].append((a.get("name", ""), a.get("value", "")))
        elif kind == "submit":
            form["buttons"].append((a.get("name", ""), a.get("value", "")))


def forms(page: str) -> list[dict[str, Any]]:
    parser = _Forms()
    parser.feed(page)
    parser.close()
    return parser.forms


@dataclass(frozen=True)
class Visit:
    location: str  # where the server sent the browser back to the client
    signed_in: bool  # the login page was shown and posted
    consent: str | None  # the consent page's text, None if not shown

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.location).query).items()}


class Browser:
    """A person's browser for the login and consent pages (cookies kept between visits)."""

    def __init__(self, server: OidcServer) -> None:
        self.server = server
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def follow(
        self,
        url: str,
        redirect_uri: str,
        *,
        decision: str = "allow",
    ) -> Visit:
        """Follows an authorization (or end-session) URL up to (not into) the redirect to
        `redirect_uri`: signs in on the login page if shown, presses `decision` on the consent
        (or sign-out) page if shown."""
        response = self.session.get(url, allow_redirects=False)
        signed_in = False
        consent: str | None = None
        for _step in range(6):
            location = response.headers.get("location", "")
            if response.status_code in (302, 303, 307) and location.startswith(redirect_uri):
                return Visit(location, signed_in, consent)
            if response.status_code in (302, 303, 307):
                response = self.session.get(
                    urljoin(self.server.url + "/", location), allow_redirects=False
                )
                continue
            assert response.status_code == 200, (response.status_code, response.text[:2000])
            page = forms(response.text)
            assert page, response.text[:2000]
            form = page[0]
            fields = [(n, v) for n, v in form["fields"] if n]
            if any(n == "password" for n, _ in fields):
                fields = [(n, v) for n, v in fields if n not in ("username", "password")]
                fields += [("username", USERNAME), ("password", PASSWORD)]
                signed_in = True
            else:
                consent = response.text
                fields.append(("decision", decision))
            response = self.session.post(
                urljoin(self.server.url + "/", form["action"] or "/authorize"),
                data=fields,
                allow_redirects=False,
            )
        pytest.fail(f"no redirect to {redirect_uri} after six pages: {response.text[:2000]}")


# -- node -----------------------------------------------------------------------------------------

NODE_CACHE = Path(
    os.environ.get(
        "BATON_TEST_NODE_CACHE", Path.home() / ".cache" / "baton-tests" / "openid-client6"
    )
)


def install_openid_client() -> Path:
    """panva's `openid-client` (current major, 6) from npm into a cache directory outside the
    repository, as tests/client does for oidc-provider; the script beside it."""
    return npm_peer(
        NODE_CACHE,
        "openid-client@6",
        Path(__file__).resolve().parent / "openid_client_rp.mjs",
        what="openid-client (node)",
        project="baton-test-rp",
    )
