"""The container image (deploy/container/build.sh), for real: built from Debian's packages, it
is migrated, given a user and a client by its own `baton` CLI, and serves an authorization code
flow with PKCE and a refresh to a browser-like client on the host, as the non-root user, with a
passing health check; it stops cleanly on SIGTERM.

The files are checked on every run, in milliseconds: they name only real options, and the image
agrees with deploy/systemd where both say the same thing. The image itself is opt-in, because
the build takes minutes: BATON_IMAGE_TEST=1 (`make image-test` sets it and
builds the image first). Without podman (or mmdebstrap and buildah, to build) it skips with the
reason. Environment:

- BATON_IMAGE: an image already built (`make image` builds `localhost/baton:latest`); unset,
  the test runs build.sh itself (as root: mmdebstrap's root mode).
- BATON_IMAGE_PODMAN: the podman command with its global options, e.g. `podman --runtime runc`
  on a host whose cgroups crun refuses ("cgroups in hybrid mode not supported").

The containers share the host's network (`--network host`), so a server listens on a free port
of 127.0.0.1, as the issuer's `http` allows, and PostgreSQL is the host's at 127.0.0.1:5432
(BATON_TEST_POSTGRES_URL; skipped when it is down, failed under CI=true).
"""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import asyncpg
import httpx2
import pytest

from baton.config.options import OPTIONS
from baton.store.engines import normalize_url
from tests.databases import admin_url, drop_database, plain_url, unavailable
from tests.support import PASSWORD, REDIRECT_URI, RegisteredClient, authorize, refresh

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = ROOT / "deploy" / "container"
BUILD = CONTAINER / "build.sh"
COMPOSE = CONTAINER / "compose.yaml"
ENV_EXAMPLE = CONTAINER / "baton.env.example"
SYSTEMD = ROOT / "deploy" / "systemd"
# The image's user (build.sh, customize-rootfs.sh) and what a release may weigh, uncompressed:
# 172 MB when this test was written (Debian's Essential packages and python3: 100 MB; the
# virtualenv: 70 MB).
UID = 10001
MAX_SIZE = 250_000_000
# Starting is a second or two, much longer on a busy machine; only a failure waits it out.
START_TIMEOUT = 120.0

needs_image = pytest.mark.skipif(
    os.environ.get("BATON_IMAGE_TEST") != "1",
    reason="builds and runs the container image (minutes): set BATON_IMAGE_TEST=1 "
    "(`make image-test`)",
)


def podman_command() -> list[str]:
    command = shlex.split(os.environ.get("BATON_IMAGE_PODMAN", "podman"))
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed (Debian package `podman`)")
    return command


def run_limits() -> list[str]:
    """The open-files and process limits of this process: podman's defaults are higher, and a
    host that may not raise them (a container itself) refuses to start the container."""
    limits = []
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, _ = resource.getrlimit(which)
        value = 4096 if soft == resource.RLIM_INFINITY else min(soft, 4096)
        limits += ["--ulimit", f"{name}={value}:{value}"]
    return limits


@dataclass(frozen=True)
class Image:
    podman: list[str]
    name: str

    def run(
        self,
        *args: str,
        env: dict[str, str],
        volume: str | None = None,
        stdin: str | None = None,
        entrypoint: str = "",
    ) -> subprocess.CompletedProcess[str]:
        """`podman run --rm IMAGE ARGS` (the image's `baton`, or `entrypoint`), with `volume`
        at /var/lib/baton; fails the test on a non-zero exit."""
        options = ["--entrypoint", entrypoint] if entrypoint else []
        if volume is not None:
            options += ["--volume", f"{volume}:/var/lib/baton"]
        result = subprocess.run(
            [*self.podman, "run", "--rm", "-i", *self.common(env), *options, self.name, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"podman run {self.name} {shlex.join(args)}: {result.stderr}")
        return result

    def common(self, env: dict[str, str]) -> list[str]:
        options = ["--network", "host", *run_limits()]
        for key, value in env.items():
            options += ["--env", f"{key}={value}"]
        return options


@pytest.fixture(scope="module")
def image() -> Image:
    podman = podman_command()
    name = os.environ.get("BATON_IMAGE")
    if not name:
        missing = [tool for tool in ("mmdebstrap", "buildah") if shutil.which(tool) is None]
        if missing:
            pytest.skip(f"{' and '.join(missing)} not installed: cannot build the image")
        started = time.monotonic()
        built = subprocess.run(
            [str(BUILD)], capture_output=True, text=True, timeout=1800, check=False
        )
        assert built.returncode == 0, built.stderr[-4000:]
        name = built.stdout.strip().splitlines()[-1]
        print(f"\nbuilt {name} in {time.monotonic() - started:.0f} s")
    found = subprocess.run(
        [*podman, "image", "inspect", "--format", "{{.Size}}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        pytest.fail(f"no image {name}: {found.stderr}")
    size = int(found.stdout.strip())
    print(f"\n{name}: {size / 1e6:.0f} MB")
    assert size < MAX_SIZE, f"{name} weighs {size / 1e6:.0f} MB"
    return Image(podman, name)


@pytest.fixture
def volume(image: Image) -> Iterator[str]:
    """A named volume for /var/lib/baton, as docs/container.md runs it."""
    name = f"baton-test-{secrets.token_hex(4)}"
    subprocess.run([*image.podman, "volume", "create", name], capture_output=True, check=True)
    yield name
    subprocess.run([*image.podman, "volume", "rm", "--force", name], capture_output=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(plain_url(admin_url()), timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    """BATON_DB: the image's default (SQLite in the volume), or an empty PostgreSQL database
    that only the image migrates."""
    if request.param == "sqlite":
        yield "sqlite:////var/lib/baton/baton.db"
        return
    name = f"baton_image_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        anyio.run(_admin, f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable(str(exc) or type(exc).__name__)
    url = normalize_url(admin_url()).set(database=name).render_as_string(hide_password=False)
    yield url
    drop_database(url)


def wait_until_ready(url: str, container: str, podman: list[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        state = subprocess.run(
            [*podman, "inspect", "--format", "{{.State.Running}}", container],
            capture_output=True,
            text=True,
            check=False,
        )
        if state.stdout.strip() != "true":
            break
        time.sleep(0.25)
    logs = subprocess.run([*podman, "logs", container], capture_output=True, text=True)
    pytest.fail(f"the container did not become ready:\n{logs.stdout}{logs.stderr}")


@pytest.mark.slow
@needs_image
def test_the_image_serves_a_code_flow_and_a_refresh(
    image: Image, volume: str, database: str
) -> None:
    env = {"BATON_DB": database}
    mount = ["--volume", f"{volume}:/var/lib/baton"]
    podman = image.podman

    # Nothing of the build is left in the image: no compiler, pip or apt, nor package lists.
    leftovers = image.run(
        "-c",
        "command -v gcc cc pip pip3 apt-get; ls -A /var/lib/apt/lists /root/.cache 2>/dev/null; "
        "id -u",
        env={},
        entrypoint="/bin/sh",
    )
    assert leftovers.stdout.split() == [str(UID)], leftovers.stdout

    # The image's own CLI migrates, adds the user and the client.
    upgrade = image.run("db", "upgrade", env=env, volume=volume)
    assert "at revision" in upgrade.stdout + upgrade.stderr, upgrade.stdout + upgrade.stderr
    image.run(
        "user", "create", "--username", "alice", "--password-stdin",
        env=env, volume=volume, stdin=PASSWORD + "\n",
    )  # fmt: skip
    made = image.run(
        "client", "create", "--name", "image app", "--redirect-uri", REDIRECT_URI,
        "--scope", "read write", "--json",
        env=env, volume=volume,
    )  # fmt: skip
    payload = json.loads(made.stdout)
    client = RegisteredClient(payload["client_id"], payload["client_secret"])

    # The server: `baton serve`, the image's default command, on a free port of loopback.
    port = free_port()
    name = f"baton-test-{secrets.token_hex(4)}"
    url = f"http://127.0.0.1:{port}"
    serve_env = {**env, "BATON_HOST": "127.0.0.1", "BATON_PORT": str(port)}
    started = subprocess.run(
        [
            *podman,
            "run",
            "--detach",
            "--name",
            name,
            *mount,
            *image.common(serve_env),
            # As compose.yaml runs it: only the volume is writable, no capabilities.
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            image.name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    try:
        wait_until_ready(url, name, podman)

        with httpx2.Client(base_url=url, timeout=30) as http:
            query, verifier = authorize(http, client)
            token = http.post(
                "/token",
                data={
                    "grant_type": "authorization_code",
                    "code": query["code"][0],
                    "redirect_uri": REDIRECT_URI,
                    "code_verifier": verifier,
                    **client.auth_params(),
                },
            )
            assert token.status_code == 200, token.text
            first = token.json()
            assert first["scope"] == "read write"
            renewed = refresh(http, client, first["refresh_token"])  # type: ignore[arg-type]
            assert renewed.status_code == 200, renewed.text
            second = renewed.json()
            assert second["refresh_token"] != first["refresh_token"]
            assert second["access_token"] != first["access_token"]
            # Without its verifier the code flow stops at the token endpoint (PKCE is enforced).
            query, _ = authorize(http, client, state="again")
            stolen = http.post(
                "/token",
                data={
                    "grant_type": "authorization_code",
                    "code": query["code"][0],
                    "redirect_uri": REDIRECT_URI,
                    **client.auth_params(),
                },
            )
            assert stolen.status_code == 400, stolen.text
            assert stolen.json()["error"] == "invalid_grant"

        # The image's HEALTHCHECK passes; the server runs as the unprivileged user; the
        # session key it generated in the volume is private to it.
        health = subprocess.run(
            [*podman, "healthcheck", "run", name], capture_output=True, text=True, check=False
        )
        assert health.returncode == 0, health.stdout + health.stderr
        inside = subprocess.run(
            [*podman, "exec", name, "sh", "-c", "id -u; stat -c %a /var/lib/baton/*session.key"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert inside.stdout.split() == [str(UID), "600"], inside.stdout + inside.stderr
    finally:
        stopped = time.monotonic()
        subprocess.run([*podman, "stop", "--time", "30", name], capture_output=True)
        took = time.monotonic() - stopped
        code = subprocess.run(
            [*podman, "inspect", "--format", "{{.State.ExitCode}}", name],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        logs = subprocess.run([*podman, "logs", name], capture_output=True, text=True)
        subprocess.run([*podman, "rm", "--force", name], capture_output=True)
    # SIGTERM (podman stop) ends it cleanly, well before the SIGKILL.
    assert code == "0" and took < 25, (code, took, logs.stderr[-2000:])
    assert "Finished server process" in logs.stderr + logs.stdout


# -- the files, on every run ----------------------------------------------------------------------


def image_config() -> dict[str, list[str]]:
    """What build.sh's `buildah config` sets: each option with its values, in order."""
    text = BUILD.read_text()
    config = text[text.index("$BUILDAH config") : text.index('"$container"\n$BUILDAH commit')]
    found: dict[str, list[str]] = {}
    for option, value in re.findall(r"--([a-z-]+) ('[^']*'|\"[^\"]*\"|\S+)", config):
        found.setdefault(option, []).append(value.strip("'\""))
    return found


def test_image_and_compose_name_only_real_options() -> None:
    known = {option.env for option in OPTIONS}
    defaults = dict(value.split("=", 1) for value in image_config()["env"])
    compose = COMPOSE.read_text()
    named = {
        *(name for name in defaults if name.startswith("BATON_")),
        *re.findall(r"^\s+(BATON_[A-Z0-9_]+):", compose, re.MULTILINE),
        *re.findall(r"^#?(BATON_[A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE),
    }
    assert {"BATON_DB", "BATON_HOST", "BATON_ISSUER", "BATON_SESSION_KEY"} <= named
    assert sorted(named - known) == []
    # ${BATON_IMAGE:-...} picks the image: a variable of compose's, not an option of Baton's.
    assert set(re.findall(r"\$\{(\w+)", compose)) == {"BATON_IMAGE"}
    # Secrets only in the env file (0600), never in compose.yaml itself.
    secrets_named = {option.env for option in OPTIONS if option.secret}
    assert not [name for name in secrets_named if f"{name}:" in compose]


def test_image_and_systemd_unit_agree() -> None:
    """Same state directory, database path, port and user model; both migrate before serving."""
    config = image_config()
    defaults = dict(value.split("=", 1) for value in config["env"])
    unit = (SYSTEMD / "baton.service").read_text()
    systemd_env = dict(
        re.findall(r"^(BATON_[A-Z0-9_]+)=(.*)$", (SYSTEMD / "baton.env.example").read_text(), re.M)
    )
    assert "StateDirectory=baton" in unit and "WorkingDirectory=/var/lib/baton" in unit
    assert config["volume"] == config["workingdir"] == ["/var/lib/baton"]
    assert defaults["BATON_DB"] == systemd_env["BATON_DB"] == "sqlite:////var/lib/baton/baton.db"
    assert defaults["BATON_HOST"] == systemd_env["BATON_HOST"] == "0.0.0.0"
    assert defaults["BATON_PORT"] == systemd_env["BATON_PORT"]
    assert config["port"] == [f"{defaults['BATON_PORT']}/tcp"]
    assert "DynamicUser=yes" in unit and config["user"] == [f"{UID}:{UID}"]
    # `baton db upgrade` before `baton serve`: ExecStartPre there, the `migrate` service here.
    assert "ExecStartPre=/opt/baton/bin/baton db upgrade" in unit
    assert config["entrypoint"] == ['["/opt/baton/bin/baton"]'] and config["cmd"] == ['["serve"]']
    compose = COMPOSE.read_text()
    assert 'command: ["db", "upgrade"]' in compose
    assert "condition: service_completed_successfully" in compose


def test_compose_file_is_valid_for_docker_compose(tmp_path: Path) -> None:
    """`docker-compose config` (Debian's docker-compose, which checks the Compose schema)
    accepts the file with its env file and password file in place."""
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (Debian package `docker-compose`)")
    shutil.copy(COMPOSE, tmp_path / "compose.yaml")
    shutil.copy(ENV_EXAMPLE, tmp_path / "baton.env")
    (tmp_path / "postgres_password").write_text("x\n")
    result = subprocess.run(
        [tool, "--file", str(tmp_path / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
