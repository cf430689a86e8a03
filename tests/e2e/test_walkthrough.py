"""docs/walkthrough.md, run as written against a real `baton serve`: its shell blocks in bash, in
a fresh directory, with `.venv/bin/baton` being this tree's command. The liberties taken, each
named where it is taken: a free port instead of 8000, a 3-second leeway instead of 30 (and the
wait scaled with it), and the browser (sign in as alice, press Allow, copy the code) played by
`tests.e2e.conftest.visit`. Then examples/sdk_script.py (docs/sdk.md's script, the walkthrough's
client) against the same server: a sign-in, a rotation per run, and a new sign-in once an
administrator has revoked the grant."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
import requests  # type: ignore[import-untyped,unused-ignore]

from tests.e2e.conftest import Server, free_port, visit

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
WALKTHROUGH = ROOT / "docs" / "walkthrough.md"
LEEWAY = 3  # the walkthrough's 30, scaled down
PASSWORD = "down the rabbit hole"  # alice's, in the walkthrough

# The person at the browser: follows the authorization URL through the sign-in and consent pages
# and prints the address it lands on (`--code`: the code of that address).
BROWSER = textwrap.dedent(
    """
    import sys
    from types import SimpleNamespace
    from urllib.parse import parse_qs, urlsplit

    import requests

    from tests.e2e.conftest import visit

    url = sys.argv[-1]
    server = SimpleNamespace(url=url.split("/authorize", 1)[0])
    with requests.Session() as browser:
        found = visit(browser, server, url, username="alice", password="down the rabbit hole")
    if sys.argv[1] == "--code":
        print(parse_qs(urlsplit(found.location).query)["code"][0])
    else:
        print(found.location)
    """
)


def blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    text = WALKTHROUGH.read_text()
    assert "60 seconds" in text  # the code's lifetime is stated
    serve, *steps, sdk = blocks(text)
    assert serve.strip() == 'make serve ARGS="--leeway 30"'
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "HOME": str(tmp_path),
    }
    env = {k: v for k, v in env.items() if not k.startswith("BATON_")}
    # `.venv/bin/baton`, as `make serve` leaves it: here, this tree's command.
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    wrapper = tmp_path / ".venv" / "bin" / "baton"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m baton.cli "$@"\n')
    wrapper.chmod(0o755)
    (tmp_path / "browser.py").write_text(BROWSER)
    # `make serve ARGS="--leeway 30"`: migrate ./baton.db, then serve it (port and leeway ours).
    baton = [str(wrapper)]
    subprocess.run([*baton, "db", "upgrade"], cwd=tmp_path, env=env, check=True, timeout=60)
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [*baton, "serve", "--port", str(port), "--leeway", str(LEEWAY)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_ready(port, server)
        before = set(os.listdir(tmp_path))
        outputs = run_steps(steps, port, tmp_path, env)
        written = set(os.listdir(tmp_path)) - before
        check_outputs(outputs, tmp_path)
        # Every file the walkthrough writes is one git ignores in a checkout.
        assert {"client.json", "pair0.json", "pair1.json"} <= written, written
        for name in written | {"baton.db", "baton.db-session.key"}:
            ignored = subprocess.run(
                ["git", "check-ignore", "--no-index", "-q", name], cwd=ROOT, check=False
            )
            assert ignored.returncode == 0, f"{name} is written by the walkthrough, not ignored"

        # The SDK's script, with the walkthrough's client.
        assert sdk.splitlines() == [
            "export CLIENT_ID=$CID CLIENT_SECRET=$SECRET",
            ".venv/bin/python examples/sdk_script.py",
        ]
        client = json.loads((tmp_path / "client.json").read_text())
        env["CLIENT_ID"], env["CLIENT_SECRET"] = client["client_id"], client["client_secret"]
        script = (ROOT / "examples" / "sdk_script.py").read_text()
        script = script.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        (tmp_path / "sdk_script.py").write_text(script)
        first = run_sdk_script(tmp_path, env, signs_in=True)
        assert first.endswith("generation 1, active: True\n"), first
        assert run_sdk_script(tmp_path, env, signs_in=False) == "generation 2, active: True\n"
        grants = subprocess.run(
            [*baton, "grants", "list", "--json"],
            cwd=tmp_path,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        live = [g for g in json.loads(grants.stdout)["grants"] if g["status"] == "active"]
        assert len(live) == 1, grants.stdout
        subprocess.run(
            [*baton, "grants", "revoke", live[0]["grant_id"]],
            cwd=tmp_path,
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        again = run_sdk_script(tmp_path, env, signs_in=True)
        assert again == "signed out: refresh token was revoked\ngeneration 0, active: True\n"
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_until_ready(port: int, server: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        assert server.poll() is None, "baton serve exited"
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        subprocess.run(["sleep", "0.1"], check=True)
    pytest.fail("baton serve did not get ready")


def run_steps(steps: list[str], port: int, cwd: Path, env: dict[str, str]) -> list[str]:
    """The walkthrough's blocks in one bash, each block's output after a marker line."""
    script = ["set -euo pipefail"]
    for number, step in enumerate(steps):
        step = step.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        # The leeway is ours: wait it out as the walkthrough waits out its 30 s.
        step = step.replace("sleep 30;", f"sleep {LEEWAY + 2};")
        # The person at the browser: the URL the walkthrough prints is the one visited.
        step = re.sub(
            r'^echo "(http://[^"]*/authorize\?[^"]*)"$', r'AUTH_URL="\1"', step, flags=re.M
        )
        step = re.sub(
            r"^CODE=\.\.\. .*$",
            f'CODE=$("{sys.executable}" browser.py --code "$AUTH_URL")',
            step,
            flags=re.M,
        )
        script += [f"echo; echo '@@ step {number}'", step]
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [part.strip() for part in re.split(r"^@@ step \d+$", done.stdout, flags=re.M)[1:]]


def check_outputs(outputs: list[str], cwd: Path) -> None:
    """What the walkthrough says each step shows."""
    create, authorize, exchange, rotate, retry, introspect, wait, reuse = outputs
    assert create.startswith("created user alice\n")
    assert json.loads(create.split("\n", 1)[1])["client_secret"].startswith("bat_cs_")
    assert authorize == ""
    pair0 = json.loads((cwd / "pair0.json").read_text())
    pair1 = json.loads((cwd / "pair1.json").read_text())
    assert json.loads(exchange) == pair0 and pair0["access_token"].startswith("bat_at_")
    assert json.loads(rotate) == pair1 and pair1["refresh_token"] != pair0["refresh_token"]
    # A retry inside the leeway: the same pair again.
    replayed = json.loads(retry)
    assert (replayed["access_token"], replayed["refresh_token"]) == (
        pair1["access_token"],
        pair1["refresh_token"],
    )
    old = json.loads(introspect)
    assert old["active"] is True and old["revocation_at"] < old["exp"]
    assert json.loads(wait) == {"active": False}
    # curl prints no newline: the two answers run together, then `baton grants list`.
    decoder = json.JSONDecoder()
    error, end = decoder.raw_decode(reuse)
    introspected, end = decoder.raw_decode(reuse, end)
    grants = reuse[end:]
    assert error == {
        "error": "invalid_grant",
        "error_description": "refresh token was reused after its leeway: the grant has been "
        "revoked (reuse detected)",
    }
    assert introspected == {"active": False}
    assert "revoked" in grants and "reuse" in grants, grants


def run_sdk_script(cwd: Path, env: dict[str, str], *, signs_in: bool) -> str:
    """examples/sdk_script.py as a person runs it: when it prints a URL to open, the browser
    signs in and the address it lands on is pasted."""
    process = subprocess.Popen(
        [sys.executable, "sdk_script.py"],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    shown = ""
    if signs_in:
        while not (line := process.stdout.readline()).startswith("open "):
            assert line, process.communicate()[1]
            shown += line
        url = line.removeprefix("open ").strip()
        server = cast(Server, SimpleNamespace(url=url.split("/authorize", 1)[0]))
        with requests.Session() as browser:
            landed = visit(browser, server, url, username="alice", password=PASSWORD)
        process.stdin.write(landed.location + "\n")
        process.stdin.flush()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, out + err
    return shown + out.removeprefix("paste the address the browser was sent to (within 60 s): ")
