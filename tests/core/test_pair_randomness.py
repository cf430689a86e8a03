"""A pair's tokens and its seal, drawn with as few calls on the system's randomness as can be:
still well-formed, independent tokens, and never a nonce used twice under one key."""

from __future__ import annotations

import os
import secrets

import pytest

from baton.core.pairs import MintedPair
from baton.core.seal import open_seal, sealer
from baton.core.tokens import TokenKind, digest, kind_of, random_base62_parts, random_id

BASE62 = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class JwtLike:
    """An access-token format that is not opaque: its token is made with its claims."""

    def issue(self, claims: object) -> str:
        return "a.b.c"


def test_parts_have_their_widths_in_base62() -> None:
    parts = random_base62_parts(43, 0, 17)
    assert [len(p) for p in parts] == [43, 0, 17]
    assert set("".join(parts)) <= BASE62


def test_a_new_pair_is_two_valid_distinct_tokens_and_an_id_like_jti() -> None:
    pairs = [MintedPair.new() for _ in range(200)]
    for pair in pairs:
        assert pair.refresh is not None and pair.access is not None
        assert kind_of(pair.refresh.plaintext) is TokenKind.REFRESH
        assert kind_of(pair.access.plaintext) is TokenKind.ACCESS
        assert pair.refresh.digest == digest(pair.refresh.plaintext)
        assert pair.access.digest == digest(pair.access.plaintext)
        assert len(pair.jti) == len(random_id("", 12)) and set(pair.jti) <= BASE62
        # Cut from one draw, the three are still unrelated strings.
        assert pair.refresh.plaintext[7:50] != pair.access.plaintext[7:50]
        assert pair.jti not in pair.refresh.plaintext and pair.jti not in pair.access.plaintext
    every = [p.refresh.plaintext for p in pairs if p.refresh] + [
        p.access.plaintext for p in pairs if p.access
    ]
    assert len(set(every)) == len(every)
    assert len({p.jti for p in pairs}) == len(pairs)


def test_without_refresh_or_with_a_signed_format_only_what_is_needed_is_made() -> None:
    pair = MintedPair.new(with_refresh=False)
    assert pair.refresh is None and pair.access is not None
    signed = MintedPair.new(access_format=JwtLike())
    assert signed.access is None and signed.refresh is not None
    assert len(signed.jti) == len(random_id("", 12))


def test_a_pair_draws_the_system_randomness_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = secrets.token_bytes

    def counted(n: int | None = None) -> bytes:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(secrets, "token_bytes", counted)
    MintedPair.new()
    assert len(calls) <= 2  # one, and a second only when the first came out short


def test_each_seal_of_one_sealer_has_its_own_nonce() -> None:
    token = "bat_rt_" + "a" * 49
    token_digest = digest(token)
    seal = sealer(token, token_digest)
    sealed = [seal(b"pair"), seal(b"id token"), seal(b"more")]
    assert len({s[:12] for s in sealed}) == 3
    assert [open_seal(token, token_digest, s) for s in sealed] == [b"pair", b"id token", b"more"]


def test_the_first_nonce_is_drawn_with_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "bat_rt_" + "b" * 49
    seal = sealer(token, digest(token))

    def no_randomness(n: int) -> bytes:
        raise AssertionError("the seal drew randomness inside the transaction")

    monkeypatch.setattr(os, "urandom", no_randomness)
    assert open_seal(token, digest(token), seal(b"payload")) == b"payload"
