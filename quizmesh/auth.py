"""Signed, expiring credentials for players and hosts.

A player's identity comes only from their credential, never from a field of a message. Tokens are
HS256 JWTs; the algorithm is pinned on verification, so `alg: none` and algorithm-swap tokens fail.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import jwt

Role = Literal["player", "host"]
_ISSUER = "quizmesh"
_ALGORITHM = "HS256"
# Verified credentials remembered per process: a player's credential comes with every answer, and an
# HS256 check through PyJWT costs ≈ 30 µs. Large enough for every player of a busy process.
VERIFIED_CACHE_SIZE = 50_000


class InvalidCredential(Exception):
    """The credential is missing, malformed, forged, expired or for something else."""


@dataclass(frozen=True)
class Principal:
    """Who a verified credential speaks for."""

    role: Role
    quiz_id: str
    player_id: str  # empty for hosts


class Credentials:
    """Issues and verifies credentials with one key."""

    def __init__(
        self,
        key: bytes,
        *,
        player_ttl_s: int = 6 * 3600,
        host_ttl_s: int = 24 * 3600,
        verified_cache_size: int = VERIFIED_CACHE_SIZE,
    ) -> None:
        self._key = key
        self._ttl: dict[Role, int] = {"player": player_ttl_s, "host": host_ttl_s}
        # token -> (its verified claims as the checks below need them, its expiry in epoch seconds)
        self._verified: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()
        self._verified_cache_size = verified_cache_size

    def subkey(self, purpose: str) -> bytes:
        """A key for another purpose derived from this one, so that one secret serves both and neither
        key reveals the other."""
        return hmac.new(self._key, f"quizmesh:{purpose}".encode(), hashlib.sha256).digest()

    def issue(self, role: Role, quiz_id: str, player_id: str = "", *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": _ISSUER,
            "sub": player_id or f"host:{quiz_id}",
            "role": role,
            "quiz": quiz_id,
            "iat": issued,
            "exp": issued + self._ttl[role],
        }
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)

    def verify(self, token: str, role: Role, quiz_id: str | None = None) -> Principal:
        if not token:
            raise InvalidCredential("a credential is required")
        claims = self._verified_claims(token)
        if claims.get("role") != role:
            raise InvalidCredential(f"a {role} credential is required")
        claimed_quiz = claims.get("quiz")
        if not isinstance(claimed_quiz, str) or (quiz_id is not None and claimed_quiz != quiz_id):
            raise InvalidCredential("the credential is for another quiz")
        player_id = str(claims["sub"]) if role == "player" else ""
        return Principal(role=role, quiz_id=claimed_quiz, player_id=player_id)

    def _verified_claims(self, token: str) -> dict[str, Any]:
        """The claims of a token whose signature, issuer and expiry hold now. A token verified before
        is not decoded again, but its expiry is still checked on every use."""
        cached = self._verified.get(token)
        if cached is not None:
            claims, expires = cached
            if time.time() < expires:
                self._verified.move_to_end(token)
                return claims
            del self._verified[token]
            raise InvalidCredential("the credential has expired")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidCredential("the credential has expired") from None
        except jwt.PyJWTError:
            raise InvalidCredential("the credential is not valid") from None
        self._verified[token] = (claims, float(claims["exp"]))
        if len(self._verified) > self._verified_cache_size:
            self._verified.popitem(last=False)
        return claims
