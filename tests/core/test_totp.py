"""TOTP (RFC 6238) and HOTP (RFC 4226) by their RFCs' test vectors, the window at its edges,
the sealed secret, and recovery codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from baton.core import totp
from baton.core.keys import key_encryption_key
from baton.core.tokens import digest as digest_of

RFC_SECRET = b"12345678901234567890"  # RFC 4226 Appendix D / RFC 6238 Appendix B (SHA-1)


@pytest.mark.parametrize(
    ("counter", "code"),
    list(
        enumerate(
            [
                "755224",
                "287082",
                "359152",
                "969429",
                "338314",
                "254676",
                "287922",
                "162583",
                "399871",
                "520489",
            ]
        )
    ),
)
def test_hotp_matches_rfc_4226_appendix_d(counter: int, code: str) -> None:
    assert totp.hotp(RFC_SECRET, counter) == code


@pytest.mark.parametrize(
    ("now", "code"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_totp_matches_rfc_6238_appendix_b_sha1(now: int, code: str) -> None:
    assert totp.totp(RFC_SECRET, now, digits=8) == code
    # Six digits are the last six of the same truncation (the modulus is 10^6).
    assert totp.totp(RFC_SECRET, now) == code[-6:]


def _code_of_step(step: int) -> str:
    return totp.hotp(RFC_SECRET, step)


@pytest.mark.parametrize("offset", [0, 29])  # the first and last second of the step
def test_window_accepts_one_step_either_side_and_no_more(offset: int) -> None:
    now = 1_000_000 * totp.STEP + offset
    t = totp.time_step(now)
    assert t == 1_000_000
    for delta in (-1, 0, 1):
        assert totp.matching_step(RFC_SECRET, _code_of_step(t + delta), now, None) == t + delta
    for delta in (-2, 2):
        assert totp.matching_step(RFC_SECRET, _code_of_step(t + delta), now, None) is None


def test_a_step_at_or_before_the_last_accepted_one_is_refused() -> None:
    now = 1_000_000 * totp.STEP
    t = totp.time_step(now)
    code = _code_of_step(t)
    assert totp.matching_step(RFC_SECRET, code, now, last_step=t) is None
    assert totp.matching_step(RFC_SECRET, code, now, last_step=t + 1) is None
    assert totp.matching_step(RFC_SECRET, code, now, last_step=t - 1) == t
    assert totp.matching_step(RFC_SECRET, _code_of_step(t - 1), now, last_step=t - 1) is None


@pytest.mark.parametrize(
    "typed", ["", "12345", "1234567", "abcdef", "\uff11\uff12\uff13\uff14\uff15\uff16"]
)  # full-width digits last
def test_malformed_codes_match_nothing(typed: str) -> None:
    assert totp.matching_step(RFC_SECRET, typed, 59, None) is None


def test_spaces_in_a_typed_code_are_ignored() -> None:
    now = 1_000_000 * totp.STEP
    code = _code_of_step(totp.time_step(now))
    assert totp.matching_step(RFC_SECRET, f" {code[:3]} {code[3:]} ", now, None) is not None


def test_secret_is_160_bits_in_base32_and_reads_back() -> None:
    secret = totp.new_secret()
    assert len(secret) == 20
    text = totp.b32(secret)
    assert len(text) == 32 and "=" not in text
    assert totp.from_b32(text.lower()) == secret
    assert totp.from_b32(" ".join(text[i : i + 4] for i in range(0, 32, 4))) == secret
    with pytest.raises(ValueError):
        totp.from_b32("not base32!")


def test_otpauth_uri_follows_the_key_uri_format() -> None:
    uri = totp.otpauth_uri(RFC_SECRET, "alice@example", "Baton Test")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Baton Test:alice@example"
    assert parts.path == "/Baton%20Test:alice@example"
    odd = urlsplit(totp.otpauth_uri(RFC_SECRET, "a:b", "Baton")).path
    assert odd == "/Baton:a%3Ab"  # a colon in the account is not the separator
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query == {
        "secret": base64.b32encode(RFC_SECRET).decode(),
        "issuer": "Baton Test",
        "algorithm": "SHA1",
        "digits": "6",
        "period": "30",
    }


def test_sealed_secret_opens_only_with_its_key_and_for_its_user() -> None:
    kek = key_encryption_key("k" * 32)
    sealed = totp.seal_secret(RFC_SECRET, kek, 7)
    assert totp.b32(RFC_SECRET) not in sealed
    assert totp.open_secret(sealed, kek, 7) == RFC_SECRET
    assert totp.open_secret(sealed, kek, 8) is None  # another user's row
    assert totp.open_secret(sealed, key_encryption_key("j" * 32), 7) is None
    assert totp.open_secret("junk", kek, 7) is None
    assert totp.open_secret("v1:!!!", kek, 7) is None


def test_recovery_codes_are_distinct_and_digested_as_typed_in_any_form() -> None:
    codes = totp.new_recovery_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    code = codes[0]
    assert totp.looks_like_recovery(code)
    kek = key_encryption_key("k" * 32)
    digest = totp.recovery_digest(code, kek)
    assert len(digest) == 32
    assert totp.recovery_digest(code.upper().replace("-", " "), kek) == digest
    assert totp.recovery_digest(codes[1], kek) != digest
    assert totp.recovery_digests(codes, kek)[0] == digest


def test_recovery_codes_are_keyed_by_the_key_encryption_key_not_a_plain_hash() -> None:
    # 50 bits of code are within reach of a brute force against a plain hash: what the database
    # keeps must need the key-encryption key to compute.
    code = totp.new_recovery_codes()[0]
    kek = key_encryption_key("k" * 32)
    digest = totp.recovery_digest(code, kek)
    normalized = totp.normalize_code(code).lower()
    for plain in (code, normalized, "recovery:" + normalized):
        assert digest != hashlib.sha256(plain.encode()).digest()
    assert digest != digest_of("recovery:" + normalized)
    assert totp.recovery_digest(code, key_encryption_key("j" * 32)) != digest
    # A key of its own: not the key-encryption key itself.
    assert digest != hmac.digest(kek, ("recovery:" + normalized).encode(), "sha256")
