"""The token format: `bat_<kind>_`, 43 random base62 chars (256 bits), 6 of CRC32."""

from __future__ import annotations

import hashlib
import math
import re
import string
import zlib
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.tokens import (
    DIGEST_TEXT_PATTERN,
    Minted,
    TokenKind,
    digest,
    digest_from_text,
    digest_text,
    kind_of,
    mint,
    random_base62,
    random_id,
)

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
UNRESERVED = set(string.ascii_letters + string.digits + "-._~")
PREFIX_LEN = 7
BODY_LEN = 43
CHECK_LEN = 6
TOKEN_LEN = PREFIX_LEN + BODY_LEN + CHECK_LEN

kinds = st.sampled_from(list(TokenKind))
minted = kinds.map(mint)


def crc_suffix(head: str) -> str:
    """The checksum as documented: CRC32 of prefix and body, 6 base62 digits, big-endian."""
    number = zlib.crc32(head.encode("ascii"))
    digits = []
    for _ in range(CHECK_LEN):
        number, rem = divmod(number, 62)
        digits.append(BASE62[rem])
    return "".join(reversed(digits))


def from_base62(text: str) -> int:
    value = 0
    for char in text:
        value = value * 62 + BASE62.index(char)
    return value


# -- minting --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [
        (TokenKind.ACCESS, "bat_at_"),
        (TokenKind.REFRESH, "bat_rt_"),
        (TokenKind.CODE, "bat_ac_"),
        (TokenKind.CLIENT_SECRET, "bat_cs_"),
    ],
)
def test_mint_format(kind: TokenKind, prefix: str) -> None:
    token = mint(kind)
    assert token.kind is kind
    assert kind.prefix == prefix
    assert token.plaintext.startswith(prefix)
    assert len(token.plaintext) == TOKEN_LEN
    tail = token.plaintext[PREFIX_LEN:]
    assert set(tail) <= set(BASE62)
    head = token.plaintext[: PREFIX_LEN + BODY_LEN]
    assert token.plaintext[PREFIX_LEN + BODY_LEN :] == crc_suffix(head)


@given(minted)
def test_minted_body_is_43_base62_chars_and_checksum_is_crc32(token: Minted) -> None:
    body = token.plaintext[PREFIX_LEN : PREFIX_LEN + BODY_LEN]
    assert len(body) == BODY_LEN and set(body) <= set(BASE62)
    assert BODY_LEN * math.log2(62) >= 256
    assert token.plaintext.endswith(crc_suffix(token.plaintext[: PREFIX_LEN + BODY_LEN]))


def test_every_character_of_a_body_is_uniform_over_the_alphabet() -> None:
    """86,000 characters: each of the 62 is expected 1,387 times (standard deviation 37), so
    a bias such as `byte % 62` over all 256 byte values (the first 8 characters 25% likelier)
    lands far outside these bounds."""
    bodies = "".join(mint(TokenKind.REFRESH).plaintext[PREFIX_LEN:-CHECK_LEN] for _ in range(2000))
    counts = Counter(bodies)
    expected = len(bodies) / 62
    assert set(counts) == set(BASE62)
    assert all(abs(n - expected) < 6 * math.sqrt(expected) for n in counts.values()), counts


def test_random_text_draws_again_when_too_many_bytes_were_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draws = iter([b"\xff" * 56, bytes(range(56))])  # all dropped, then 0..55
    monkeypatch.setattr("baton.core.tokens.secrets.token_bytes", lambda n: next(draws))
    assert random_base62(43) == BASE62[:43]


def test_mint_is_random() -> None:
    tokens = {mint(TokenKind.REFRESH).plaintext for _ in range(200)}
    assert len(tokens) == 200
    # 256 random bits spread over 43 base62 digits: the leading digit is not always 0 and the
    # bodies use the whole alphabet.
    bodies = "".join(t[PREFIX_LEN : PREFIX_LEN + BODY_LEN] for t in tokens)
    assert set(bodies) == set(BASE62)


def test_minted_token_hides_plaintext_in_repr() -> None:
    token = mint(TokenKind.REFRESH)
    assert token.plaintext not in repr(token)


# -- digest ----------------------------------------------------------------------------------------


@given(minted)
def test_digest_is_sha256_of_the_plaintext(token: Minted) -> None:
    expected = hashlib.sha256(token.plaintext.encode("ascii")).digest()
    assert token.digest == expected
    assert digest(token.plaintext) == expected
    assert len(token.digest) == 32


def test_digest_known_value() -> None:
    assert digest("abc") == bytes.fromhex(
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


@given(st.binary(min_size=32, max_size=32))
def test_a_digest_as_token_use_reports_name_it_round_trips(raw: bytes) -> None:
    """`POST /token-use` (issue 28): base64url without padding, 43 characters, and back."""
    text = digest_text(raw)
    assert re.fullmatch(DIGEST_TEXT_PATTERN, text)  # what the OpenAPI document says of it
    assert digest_from_text(text) == raw


@given(st.text(max_size=60))
def test_digest_from_text_takes_only_what_digest_text_writes(text: str) -> None:
    raw = digest_from_text(text)
    assert raw is None or digest_text(raw) == text
    assert (raw is None) == (re.fullmatch(DIGEST_TEXT_PATTERN, text) is None)


def test_digest_from_text_refuses_near_misses() -> None:
    text = digest_text(digest("bat_at_x"))
    for near in (
        text[:-1],  # 42 characters
        text + "A",  # 44
        text[:-1] + "=",  # padding
        "+/" + text[2:],  # base64's alphabet, not base64url's
        text[:-1] + chr(ord(text[-1]) + 1),  # bits past the 256th: not canonical
        digest("bat_at_x").hex(),
    ):
        assert digest_from_text(near) is None, near


# -- kind_of ---------------------------------------------------------------------------------------


@given(minted)
def test_kind_of_accepts_every_minted_token(token: Minted) -> None:
    assert kind_of(token.plaintext) is token.kind


@given(minted, st.data())
def test_kind_of_rejects_truncated_tokens(token: Minted, data: st.DataObject) -> None:
    length = data.draw(st.integers(0, TOKEN_LEN - 1))
    assert kind_of(token.plaintext[:length]) is None


@given(minted, st.text(min_size=1, max_size=5))
def test_kind_of_rejects_extended_tokens(token: Minted, extra: str) -> None:
    assert kind_of(token.plaintext + extra) is None
    assert kind_of(extra + token.plaintext) is None


@given(minted, st.data())
def test_kind_of_rejects_any_one_char_mutation(token: Minted, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, TOKEN_LEN - 1), label="position")
    original = token.plaintext[position]
    replacement = data.draw(
        st.one_of(st.sampled_from(BASE62 + "_-~."), st.characters()).filter(
            lambda c: c != original
        ),
        label="replacement",
    )
    mutated = token.plaintext[:position] + replacement + token.plaintext[position + 1 :]
    assert kind_of(mutated) is None


@given(minted, st.integers(PREFIX_LEN, TOKEN_LEN - 2))
def test_kind_of_rejects_swapped_adjacent_chars(token: Minted, position: int) -> None:
    text = token.plaintext
    swapped = text[:position] + text[position + 1] + text[position] + text[position + 2 :]
    if swapped != text:
        assert kind_of(swapped) is None


@given(minted, kinds)
def test_kind_of_rejects_another_kinds_prefix(token: Minted, other: TokenKind) -> None:
    relabelled = other.prefix + token.plaintext[PREFIX_LEN:]
    if other is token.kind:
        assert kind_of(relabelled) is token.kind
    else:
        # The checksum covers the prefix: an access token cannot pass for a refresh token.
        assert kind_of(relabelled) is None


@pytest.mark.parametrize(
    "prefix", ["bat_xx_", "BAT_RT_", "bat-rt_", "ghp_rt_", "bat_rt-", "bat_r_t"]
)
def test_kind_of_rejects_unknown_prefix_even_with_valid_checksum(prefix: str) -> None:
    body = mint(TokenKind.REFRESH).plaintext[PREFIX_LEN : PREFIX_LEN + BODY_LEN]
    head = prefix + body
    assert kind_of(head + crc_suffix(head)) is None


@given(minted, minted)
def test_kind_of_rejects_wrong_checksum(token: Minted, other: Minted) -> None:
    head = token.plaintext[: PREFIX_LEN + BODY_LEN]
    foreign = other.plaintext[PREFIX_LEN + BODY_LEN :]
    if foreign != crc_suffix(head):
        assert kind_of(head + foreign) is None


def test_kind_of_rejects_non_alphabet_body_with_matching_checksum() -> None:
    # A checksum over a body outside base62 must not make it acceptable.
    head = "bat_rt_" + "-" * BODY_LEN
    assert kind_of(head + crc_suffix(head)) is None
    head = "bat_rt_" + "é" + "a" * (BODY_LEN - 1)
    assert kind_of(head + "A" * CHECK_LEN) is None


@given(st.text(max_size=80))
def test_kind_of_rejects_arbitrary_text(text: str) -> None:
    kind = kind_of(text)
    if kind is not None:  # only possible for a well-formed token, i.e. practically never
        assert text.startswith(kind.prefix)
        assert text.endswith(crc_suffix(text[: PREFIX_LEN + BODY_LEN]))


def test_kind_of_on_a_handmade_valid_token() -> None:
    head = "bat_at_" + "0" * BODY_LEN
    assert kind_of(head + crc_suffix(head)) is TokenKind.ACCESS
    assert kind_of("") is None


# -- random_id -------------------------------------------------------------------------------------


@given(st.integers(1, 64), st.sampled_from(["", "cl_", "grt_", "x-"]))
def test_random_id_uses_only_unreserved_chars(nbytes: int, prefix: str) -> None:
    ident = random_id(prefix, nbytes)
    assert ident.startswith(prefix)
    rest = ident[len(prefix) :]
    assert set(ident) <= UNRESERVED
    assert set(rest) <= set(BASE62)
    # Wide enough for every value of `nbytes` random bytes, and no wider than one digit more.
    assert 62 ** len(rest) >= 2 ** (8 * nbytes)
    assert 62 ** (len(rest) - 1) < 2 ** (8 * nbytes)


def test_random_id_default_width_and_uniqueness() -> None:
    ids = {random_id("cl_") for _ in range(500)}
    assert len(ids) == 500
    assert all(len(i) == 3 + 22 for i in ids)  # 128 bits in 22 base62 digits
