"""The JOSE side of `baton.resource`: both names of the Ed25519 signature, no warning and no
warning filter in the host application, and joserfc an optional extra."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from baton.resource import InvalidToken
from tests.resource.conftest import VerifierFactory
from tests.resource.fakes import FakeAuthServer

ROOT = Path(__file__).resolve().parents[2]


def run_python(script: str) -> subprocess.CompletedProcess[str]:
    """`script` in a fresh interpreter (nothing imported yet), on this tree's `baton`."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("jwk_alg", [None, "Ed25519", "EdDSA"])
def test_eddsa_and_ed25519_are_one_signature(
    fake: FakeAuthServer, make_verifier: VerifierFactory, jwk_alg: str | None
) -> None:
    """A token minted as `EdDSA` before RFC 9864 verifies once the JWKS names its key `Ed25519`,
    and an `Ed25519` token verifies with a key an older issuer publishes as `EdDSA`."""
    key = fake.add_key("ed", "Ed25519", jwk_alg=jwk_alg)
    fake.keys["ed-legacy"] = ("EdDSA", key)  # the same key, signing under the old name
    verifier = make_verifier()
    new = fake.jwt("ed", jti="j-new")
    old = fake.jwt("ed-legacy", header={"kid": "ed"}, jti="j-old")
    assert verifier.verify(new).jti == "j-new"
    assert verifier.verify(old).jti == "j-old"


def test_the_allow_list_still_names_each_algorithm(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    key = fake.add_key("ed", "Ed25519", jwk_alg="Ed25519")
    fake.keys["ed-legacy"] = ("EdDSA", key)
    only_new = make_verifier(algorithms=["Ed25519"])
    with pytest.raises(InvalidToken, match="algorithm not allowed: EdDSA"):
        only_new.verify(fake.jwt("ed-legacy", header={"kid": "ed"}))
    # An Edwards name never lends an EC key (k1, ES256) to an Ed25519 signature.
    fake.keys["k1-ed"] = ("Ed25519", key)
    with pytest.raises(InvalidToken, match="bad signature"):
        make_verifier().verify(fake.jwt("k1-ed", header={"kid": "k1"}))


def test_verifying_eddsa_warns_nothing(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    fake.add_key("ed", "EdDSA", jwk_alg="EdDSA")
    verifier = make_verifier()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        verifier.verify(fake.jwt("ed"))
    assert [str(w.message) for w in caught] == []


def test_baton_resource_leaves_the_warning_filters_alone() -> None:
    """Importing and using `baton.resource` (an EdDSA and an Ed25519 token) changes no warning
    filter and emits no warning; joserfc's own registry still warns about EdDSA."""
    done = run_python(
        """
        import warnings

        warnings.simplefilter("error")  # any warning fails the script
        before = list(warnings.filters)

        from tests.resource.fakes import FakeAuthServer
        from baton.resource import Verifier

        fake = FakeAuthServer()
        fake.add_key("old", "EdDSA")
        fake.add_key("new", "Ed25519", jwk_alg="Ed25519")
        transport = fake.transport()
        verifier = Verifier(
            "https://as.test", "rs_client", "rs_secret", audience="https://as.test",
            transport=transport, feed_transport=transport, clock=lambda: fake.now,
        )
        verifier.start(wait=5)  # a healthy feed: the JWTs are checked locally, not introspected
        assert verifier.feed_healthy()
        assert [verifier.verify(fake.jwt(kid)).subject for kid in ("old", "new")] == ["alice"] * 2
        verifier.stop()
        assert warnings.filters == before, warnings.filters[: len(warnings.filters) - len(before)]

        from joserfc import jws
        from joserfc.errors import SecurityWarning
        try:
            jws.deserialize_compact(fake.jwt("old"), fake.keys["old"][1], algorithms=["EdDSA"])
        except SecurityWarning:
            print("joserfc still warns")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "joserfc still warns"


def test_without_joserfc_opaque_tokens_verify_and_jwts_say_what_to_install() -> None:
    done = run_python(
        """
        import sys

        import baton.resource
        assert not [m for m in sys.modules if m.partition(".")[0] == "joserfc"], "not lazy"

        from tests.resource.fakes import FakeAuthServer  # the fake signs with joserfc
        for name in [m for m in sys.modules if m.partition(".")[0] == "joserfc"]:
            sys.modules[name] = None  # as if the `jose` extra were not installed

        from baton.resource import JwksCache, Verifier

        fake = FakeAuthServer()
        options = dict(audience="https://as.test", feed=False, transport=fake.transport())
        try:
            Verifier("https://as.test", "rs_client", "rs_secret", **options)
        except ImportError as exc:
            print(exc)
        verifier = Verifier("https://as.test", "rs_client", "rs_secret", algorithms=(), **options)
        assert verifier.verify(fake.opaque_token(scope="read"), "read").client_id == "app"
        try:
            JwksCache("https://as.test/jwks.json").load({"keys": []})
        except ImportError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]
    assert "the `jose` extra" in lines[0] and 'pip install "baton-oauth[jose]"' in lines[0]
    assert "algorithms=()" in lines[0]
