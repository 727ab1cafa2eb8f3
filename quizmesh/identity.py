"""Identity tokens of the host application's users: one verifier for every service that acts on them.

The application's identity provider (OIDC) signs JWTs; a token is accepted when its signature checks
against one of the provider's public keys (its JWKS, read from a file or fetched from a URL), with the
algorithm pinned by configuration (RS256 or ES256 only: `none` and the HS* family are never accepted,
so a token signed with the provider's *public* key as an HMAC secret fails), its issuer and audience
those configured, and its times valid within a small leeway. The user is the token's subject.

Keys are cached. A token naming a key ID the cache lacks (the provider rotated its keys) makes the
verifier fetch the JWKS again, at most once per `min_refetch_s`, so a stream of tokens with made-up
key IDs cannot turn into a stream of fetches; the cache is also refreshed once it is `max_age_s` old,
so a key the provider withdrew stops being accepted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import aiohttp
import jwt

from quizmesh.settings import Choice, FromEnvironment, Integer, SettingsError, Text, setting

IdentityMode = Literal["anonymous", "token", "both"]
Algorithm = Literal["RS256", "ES256"]
# Asymmetric algorithms only: with these, what verifies a token cannot sign one.
ALLOWED_ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)
_FETCH_TIMEOUT_S = 5.0

IDENTITY_MODE: Choice[IdentityMode] = Choice(
    "QUIZMESH_IDENTITY_MODE",
    "Who may play and host: `anonymous` (nicknames and host credentials only; identity tokens are refused), "
    "`token` (players join with an identity token of the application's identity provider) or `both` "
    "(either; a quiz may still require sign-in).",
    default="anonymous",
    choices=get_args(IdentityMode),
)
IDENTITY_JWKS = Text(
    "QUIZMESH_IDENTITY_JWKS",
    "The identity provider's public keys (JWKS): an `https://` (or `http://`) URL, fetched and cached, or a "
    "file path. Required unless the identity mode is `anonymous`.",
    default="",
)
IDENTITY_ISSUER = Text(
    "QUIZMESH_IDENTITY_ISSUER",
    "The `iss` every identity token must carry. Required unless the identity mode is `anonymous`.",
    default="",
)
IDENTITY_AUDIENCE = Text(
    "QUIZMESH_IDENTITY_AUDIENCE",
    "The `aud` every identity token must carry (the client ID quizmesh is registered under). Required unless "
    "the identity mode is `anonymous`.",
    default="",
)
IDENTITY_ALGORITHM: Choice[Algorithm] = Choice(
    "QUIZMESH_IDENTITY_ALGORITHM",
    "The one signature algorithm identity tokens are accepted with: the identity provider's.",
    default="RS256",
    choices=ALLOWED_ALGORITHMS,
)
IDENTITY_NAME_CLAIM = Text(
    "QUIZMESH_IDENTITY_NAME_CLAIM",
    "The token claim a signed-in player is shown under when they choose no nickname.",
    default="name",
)
IDENTITY_LEEWAY_S = Integer(
    "QUIZMESH_IDENTITY_LEEWAY_S",
    "Clock skew allowed on an identity token's `exp`, `nbf` and `iat`, in seconds.",
    default=30,
    minimum=0,
)
IDENTITY_JWKS_MIN_REFETCH_S = Integer(
    "QUIZMESH_IDENTITY_JWKS_MIN_REFETCH_S",
    "The least time between two fetches of the JWKS for a token naming an unknown key ID.",
    default=60,
    minimum=1,
)
IDENTITY_JWKS_MAX_AGE_S = Integer(
    "QUIZMESH_IDENTITY_JWKS_MAX_AGE_S",
    "How long fetched keys are used before the JWKS is fetched again.",
    default=3600,
    minimum=10,
)


def is_identity_token(token: str) -> bool:
    """Whether a bearer token has the shape of an identity token (a JWT whose header names an algorithm
    identity tokens may be signed with) rather than of quizmesh's own host and player credentials
    (HS256). Reads the header unverified: it says which check a token goes to, never that it passes."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return False
    return header.get("alg") in ALLOWED_ALGORITHMS


class InvalidIdentity(Exception):
    """The identity token is missing, malformed, forged, expired, or for another issuer or audience."""


@dataclass(frozen=True)
class User:
    """Who a verified identity token speaks for."""

    user_id: str  # the token's subject
    name: str  # the configured claim's value; empty when the token has none


class KeySource(Protocol):
    async def fetch(self) -> Mapping[str, Any]:
        """The JWKS document."""
        ...


class FileKeys:
    def __init__(self, path: str) -> None:
        self._path = Path(path)

    async def fetch(self) -> Mapping[str, Any]:
        document: Mapping[str, Any] = json.loads(await asyncio.to_thread(self._path.read_bytes))
        return document


class UrlKeys:
    def __init__(self, url: str) -> None:
        self._url = url

    async def fetch(self) -> Mapping[str, Any]:
        timeout = aiohttp.ClientTimeout(total=_FETCH_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(self._url) as response:
            response.raise_for_status()
            document: Mapping[str, Any] = await response.json(content_type=None)
            return document


class IdentityVerifier:
    """Verifies identity tokens against the provider's keys."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        algorithm: str,
        name_claim: str = "name",
        leeway_s: int = 30,
        min_refetch_s: float = 60,
        max_age_s: float = 3600,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if algorithm not in ALLOWED_ALGORITHMS:
            raise ValueError(f"identity tokens are verified with {' or '.join(ALLOWED_ALGORITHMS)} only")
        self._source = keys
        self._issuer = issuer
        self._audience = audience
        self._algorithm = algorithm
        self._name_claim = name_claim
        self._leeway_s = leeway_s
        self._min_refetch_s = min_refetch_s
        self._max_age_s = max_age_s
        self._monotonic = monotonic
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._fetching = asyncio.Lock()

    async def verify(self, token: str) -> User:
        if not token:
            raise InvalidIdentity("an identity token is required")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidIdentity("the identity token is not a JWT") from None
        if header.get("alg") != self._algorithm:
            raise InvalidIdentity(f"the identity token must be signed with {self._algorithm}")
        key = await self._key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                # The key object itself: PyJWT before 2.9 (pyproject's floor is 2.8) takes no PyJWK here.
                key.key,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidIdentity("the identity token has expired; sign in again") from None
        except jwt.InvalidIssuerError:
            raise InvalidIdentity("the identity token is from another issuer") from None
        except jwt.InvalidAudienceError:
            raise InvalidIdentity("the identity token is for another audience") from None
        except jwt.PyJWTError:
            raise InvalidIdentity("the identity token is not valid") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise InvalidIdentity("the identity token names no subject")
        name = claims.get(self._name_claim)
        return User(subject, name if isinstance(name, str) else "")

    async def _key(self, kid: object) -> jwt.PyJWK:
        wanted = kid if isinstance(kid, str) else ""
        now = self._monotonic()
        age = None if self._fetched_at is None else now - self._fetched_at
        if age is None or age >= self._max_age_s or (self._known(wanted) is None and age >= self._min_refetch_s):
            await self._refresh(now)
        key = self._known(wanted)
        if key is None:
            raise InvalidIdentity("the identity token is signed with a key the identity provider does not publish")
        return key

    def _known(self, kid: str) -> jwt.PyJWK | None:
        if kid:
            return self._keys.get(kid)
        # A token without a key ID is accepted only while the provider publishes one key.
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def _refresh(self, started: float) -> None:
        async with self._fetching:
            if self._fetched_at is not None and self._fetched_at >= started:
                return  # another call fetched them meanwhile
            try:
                document = await self._source.fetch()
            except Exception as exc:
                if not self._keys:
                    raise InvalidIdentity(f"the identity provider's keys cannot be read: {exc!r}") from None
                # Keep verifying with the keys already known, and try again after the refetch floor,
                # not on every call.
                self._fetched_at = self._monotonic() - self._max_age_s + self._min_refetch_s
                return
            keys = {}
            for entry in document.get("keys", ()):
                if entry.get("alg", self._algorithm) != self._algorithm or entry.get("use", "sig") != "sig":
                    continue
                try:
                    keys[str(entry.get("kid", ""))] = jwt.PyJWK(entry, algorithm=self._algorithm)
                except jwt.PyJWTError:
                    continue  # a key of another type than the pinned algorithm's
            self._keys = keys
            self._fetched_at = self._monotonic()


@dataclass(frozen=True)
class IdentitySettings(FromEnvironment):
    mode: IdentityMode = setting(IDENTITY_MODE)
    jwks: str = setting(IDENTITY_JWKS)
    issuer: str = setting(IDENTITY_ISSUER)
    audience: str = setting(IDENTITY_AUDIENCE)
    algorithm: str = setting(IDENTITY_ALGORITHM)
    name_claim: str = setting(IDENTITY_NAME_CLAIM)
    leeway_s: int = setting(IDENTITY_LEEWAY_S)
    min_refetch_s: int = setting(IDENTITY_JWKS_MIN_REFETCH_S)
    max_age_s: int = setting(IDENTITY_JWKS_MAX_AGE_S)

    def check(self, env: Mapping[str, str]) -> None:
        if self.mode != "anonymous":
            for variable in (IDENTITY_JWKS, IDENTITY_ISSUER, IDENTITY_AUDIENCE):
                if not variable.read(env):
                    raise SettingsError(f"{variable.name} is required with {IDENTITY_MODE.name}={self.mode}")

    @property
    def anonymous_allowed(self) -> bool:
        return self.mode != "token"

    def verifier(self) -> IdentityVerifier | None:
        """The verifier this configuration asks for; None in the anonymous mode (tokens are refused)."""
        if self.mode == "anonymous":
            return None
        source: KeySource = UrlKeys(self.jwks) if self.jwks.startswith(("https://", "http://")) else FileKeys(self.jwks)
        return IdentityVerifier(
            source,
            issuer=self.issuer,
            audience=self.audience,
            algorithm=self.algorithm,
            name_claim=self.name_claim,
            leeway_s=self.leeway_s,
            min_refetch_s=self.min_refetch_s,
            max_age_s=self.max_age_s,
        )


class Identities:
    """What a service does with identity tokens: verify them, or, in the anonymous mode, refuse them."""

    def __init__(self, verifier: IdentityVerifier | None, *, anonymous_allowed: bool = True) -> None:
        self._verifier = verifier
        self.anonymous_allowed = anonymous_allowed

    async def user(self, token: str) -> User | None:
        """The token's user; None when no token was presented."""
        if not token:
            return None
        if self._verifier is None:
            raise InvalidIdentity("this deployment accepts no identity tokens (QUIZMESH_IDENTITY_MODE=anonymous)")
        return await self._verifier.verify(token)


ANONYMOUS = Identities(None)
