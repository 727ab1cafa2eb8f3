"""The per-process cache of verified credentials never accepts what a fresh verification would refuse."""

from __future__ import annotations

import time

import pytest

from quizmesh import auth
from quizmesh.auth import Credentials, InvalidCredential

KEY = b"k" * 32


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def test_a_cached_credential_is_still_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = Credentials(KEY, player_ttl_s=60)
    token = credentials.issue("player", "QUIZ1234", "p1")
    assert credentials.verify(token, "player").player_id == "p1"  # verified by PyJWT, then cached
    assert credentials.verify(token, "player").player_id == "p1"
    monkeypatch.setattr(auth, "time", FakeClock(time.time() + 61))
    with pytest.raises(InvalidCredential, match="expired"):
        credentials.verify(token, "player")


def test_a_cached_credential_is_checked_for_role_and_quiz_on_every_use() -> None:
    credentials = Credentials(KEY)
    token = credentials.issue("player", "QUIZ1234", "p1")
    assert credentials.verify(token, "player", "QUIZ1234").quiz_id == "QUIZ1234"
    with pytest.raises(InvalidCredential, match="host"):
        credentials.verify(token, "host")
    with pytest.raises(InvalidCredential, match="another quiz"):
        credentials.verify(token, "player", "OTHER123")


def test_a_verified_credential_lends_nothing_to_a_copy_with_other_claims() -> None:
    credentials = Credentials(KEY)
    token = credentials.issue("player", "QUIZ1234", "p1")
    credentials.verify(token, "player")
    header, _, signature = token.split(".")
    other_claims = Credentials(KEY).issue("player", "QUIZ1234", "p2").split(".")[1]
    with pytest.raises(InvalidCredential, match="not valid"):
        credentials.verify(f"{header}.{other_claims}.{signature}", "player")


def test_credentials_beyond_the_cache_size_still_verify() -> None:
    credentials = Credentials(KEY, verified_cache_size=2)
    tokens = [credentials.issue("player", "QUIZ1234", f"p{i}") for i in range(3)]
    for token in tokens:
        credentials.verify(token, "player")
    assert [credentials.verify(t, "player").player_id for t in tokens] == ["p0", "p1", "p2"]
