"""deploy/systemd/baton.service: systemd accepts it, it keeps its hardening, and its env file
example names only real options.

`systemd-analyze verify` (Debian package `systemd`) checks the unit the way systemd would load
it; it refuses an ExecStart= binary that does not exist, so the test verifies a copy pointing
at the `baton` script of the running environment instead of /opt/baton/bin/baton."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from baton.config.options import OPTIONS

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "baton.service"
ENV_EXAMPLE = ROOT / "deploy" / "systemd" / "baton.env.example"
INSTALLED = "/opt/baton/bin/baton"

# Directive -> the value it must have; removing or loosening one fails the test.
HARDENING = {
    "DynamicUser": "yes",
    "StateDirectory": "baton",
    "UMask": "0077",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "SystemCallFilter": "@system-service",
    "SystemCallArchitectures": "native",
    "Restart": "on-failure",
    "EnvironmentFile": "/etc/baton/baton.env",
}


def service_section(text: str) -> dict[str, list[str]]:
    """Each key of [Service] with its values in order (a key may repeat)."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def baton_script() -> str:
    found = shutil.which("baton") or str(Path(sys.executable).parent / "baton")
    if not Path(found).is_file():
        pytest.skip(f"no `baton` console script beside {sys.executable} or on PATH")
    return str(Path(found).resolve())


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package `systemd`)")
    text = UNIT.read_text()
    assert INSTALLED in text
    copy = tmp_path / "baton.service"
    copy.write_text(text.replace(INSTALLED, baton_script()))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # verify exits 0 on an unknown or misspelt directive: it only says so.
    about_unit = [line for line in output.splitlines() if str(copy) in line or "Unknown" in line]
    assert about_unit == [], output


def test_unit_keeps_its_hardening() -> None:
    service = service_section(UNIT.read_text())
    for key, value in HARDENING.items():
        assert value in service.get(key, []), f"{key}={value} missing from {UNIT.name}"
    assert service["ExecStart"] == [f"{INSTALLED} serve"]
    assert service["ExecStartPre"] == [f"{INSTALLED} db upgrade"]
    # No capability is ambient unless the port note's alternative is chosen deliberately.
    assert "AmbientCapabilities" not in service


def test_env_example_names_only_real_options() -> None:
    known = {option.env for option in OPTIONS}
    named = re.findall(r"^#?(BATON_[A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert named, "the example sets no BATON_ variable"
    assert sorted(set(named) - known) == []
    # Listening beyond loopback needs the issuer: the example sets both.
    assert {"BATON_HOST", "BATON_ISSUER"} <= set(named)


def test_secrets_are_not_on_the_command_line() -> None:
    service = service_section(UNIT.read_text())
    commands = " ".join(service["ExecStart"] + service["ExecStartPre"])
    secret_flags = [f"--{o.name.replace('_', '-')}" for o in OPTIONS if o.secret]
    assert secret_flags and not [flag for flag in secret_flags if flag in commands]
    assert "BATON_" not in commands and "Environment" not in service
