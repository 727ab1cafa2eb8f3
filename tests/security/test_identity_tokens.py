"""The identity-token verifier (quizmesh/identity.py) against a local JWKS with keys generated here:
the application's tokens are accepted, and forged, expired, foreign, `alg: none` and HS256-with-the-
public-key tokens are refused."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from quizmesh.auth import Credentials
from quizmesh.identity import FileKeys, IdentitySettings, IdentityVerifier, InvalidIdentity, User, is_identity_token
from quizmesh.settings import SettingsError
from tests.support.identity import (
    AUDIENCE,
    ISSUER,
    TestProvider,
    hmac_token_with,
    new_key,
    public_pem,
    unsigned_token,
)


@pytest.fixture(params=["RS256", "ES256"])
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> TestProvider:
    return TestProvider(tmp_path, request.param)


def _verifier(provider: TestProvider) -> IdentityVerifier:
    verifier = provider.settings().verifier()
    assert verifier is not None
    return verifier


async def test_a_token_of_the_provider_names_its_user(provider: TestProvider) -> None:
    user = await _verifier(provider).verify(provider.token("learner-1"))
    assert user == User("learner-1", "User learner-1")


def _refusals(provider: TestProvider) -> dict[str, str]:
    kid = provider.kid
    public = public_pem(provider.keys[kid])
    return {
        "forged (another key, the provider's key ID)": provider.token("u", key=new_key(provider.algorithm)),
        "expired": provider.token("u", iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
        "wrong issuer": provider.token("u", iss="https://evil.example.test/"),
        "wrong audience": provider.token("u", aud="another-app"),
        "no audience": provider.token("u", aud=None),
        "no subject": provider.token("u", sub=None),
        "alg none": unsigned_token(provider.claims("u"), kid),
        "HS256 with the public key as secret": hmac_token_with(public, provider.claims("u"), kid),
        "unknown key ID": provider.token("u", key=new_key(provider.algorithm), kid="key-99"),
        "not a JWT": "not-a-token",
        "tampered payload": _tampered(provider.token("u"), provider.token("admin")),
    }


def _tampered(token: str, other: str) -> str:
    """token's header and signature around other's payload."""
    header, _, signature = token.split(".")
    return ".".join((header, other.split(".")[1], signature))


@pytest.mark.parametrize(
    "case",
    [
        "forged (another key, the provider's key ID)",
        "expired",
        "wrong issuer",
        "wrong audience",
        "no audience",
        "no subject",
        "alg none",
        "HS256 with the public key as secret",
        "unknown key ID",
        "not a JWT",
        "tampered payload",
    ],
)
async def test_a_bad_token_is_refused(provider: TestProvider, case: str) -> None:
    with pytest.raises(InvalidIdentity):
        await _verifier(provider).verify(_refusals(provider)[case])


async def test_the_pinned_algorithm_is_the_only_one_accepted(tmp_path: Path) -> None:
    (tmp_path / "rs").mkdir()
    (tmp_path / "es").mkdir()
    rsa, ec = TestProvider(tmp_path / "rs", "RS256"), TestProvider(tmp_path / "es", "ES256")
    # The RS256 deployment, its JWKS publishing an EC key too, still refuses tokens signed with it.
    published = [json.loads(p.jwks_path.read_text())["keys"] for p in (rsa, ec)]
    rsa.jwks_path.write_text(json.dumps({"keys": published[0] + published[1]}))
    verifier = _verifier(rsa)
    assert (await verifier.verify(rsa.token("u"))).user_id == "u"
    with pytest.raises(InvalidIdentity):
        await verifier.verify(ec.token("u"))


def test_only_asymmetric_algorithms_can_be_configured(provider: TestProvider) -> None:
    for algorithm in ("HS256", "none", "RS512"):
        with pytest.raises(SettingsError, match="QUIZMESH_IDENTITY_ALGORITHM"):
            IdentitySettings.from_env({**provider.env(), "QUIZMESH_IDENTITY_ALGORITHM": algorithm})
        with pytest.raises(ValueError):
            IdentityVerifier(FileKeys(str(provider.jwks_path)), issuer=ISSUER, audience=AUDIENCE, algorithm=algorithm)


def test_a_token_mode_without_its_provider_does_not_start(provider: TestProvider) -> None:
    for missing in ("QUIZMESH_IDENTITY_JWKS", "QUIZMESH_IDENTITY_ISSUER", "QUIZMESH_IDENTITY_AUDIENCE"):
        env = {k: v for k, v in provider.env("token").items() if k != missing}
        with pytest.raises(SettingsError, match=missing):
            IdentitySettings.from_env(env)
    assert IdentitySettings.from_env({}).verifier() is None


class CountingKeys:
    """The provider's JWKS file, counting the fetches."""

    def __init__(self, provider: TestProvider) -> None:
        self._inner = FileKeys(str(provider.jwks_path))
        self.fetches = 0

    async def fetch(self) -> Mapping[str, Any]:
        self.fetches += 1
        return await self._inner.fetch()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _counted(provider: TestProvider) -> tuple[IdentityVerifier, CountingKeys, Clock]:
    """A verifier on a clock the test moves, and the count of its fetches of the provider's keys."""
    clock = Clock()
    keys = CountingKeys(provider)
    verifier = IdentityVerifier(
        keys,
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithm=provider.algorithm,
        min_refetch_s=60,
        max_age_s=3600,
        monotonic=clock,
    )
    return verifier, keys, clock


async def test_keys_are_cached_and_a_rotated_key_is_fetched_once(provider: TestProvider) -> None:
    verifier, keys, clock = _counted(provider)
    for _ in range(3):
        await verifier.verify(provider.token("u"))
    assert keys.fetches == 1

    provider.rotate()
    clock.now += 61
    assert (await verifier.verify(provider.token("u"))).user_id == "u"
    assert keys.fetches == 2


async def test_unknown_key_ids_cannot_make_the_verifier_fetch_more_than_once_per_floor(provider: TestProvider) -> None:
    verifier, keys, clock = _counted(provider)
    await verifier.verify(provider.token("u"))
    clock.now += 61
    for n in range(20):
        with pytest.raises(InvalidIdentity):
            await verifier.verify(provider.token("u", key=new_key(provider.algorithm), kid=f"made-up-{n}"))
    assert keys.fetches == 2
    # A key the provider rotated in within the floor is found on the first fetch after it.
    provider.rotate()
    with pytest.raises(InvalidIdentity):
        await verifier.verify(provider.token("u"))
    clock.now += 60
    assert (await verifier.verify(provider.token("u"))).user_id == "u"
    assert keys.fetches == 3


async def test_a_key_the_provider_withdrew_stops_working_once_the_cache_is_old(provider: TestProvider) -> None:
    verifier, _, clock = _counted(provider)
    old_kid = provider.kid
    old = provider.token("u")
    await verifier.verify(old)
    provider.rotate()
    del provider.keys[old_kid]
    provider.publish()
    assert (await verifier.verify(old)).user_id == "u"  # still cached
    clock.now += 3600
    with pytest.raises(InvalidIdentity):
        await verifier.verify(old)


async def test_the_jwks_is_fetched_from_the_providers_url(provider: TestProvider) -> None:
    served = 0

    async def jwks(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        return web.Response(body=provider.jwks_path.read_bytes(), content_type="application/json")

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    async with TestServer(app) as server:
        env = {**provider.env(), "QUIZMESH_IDENTITY_JWKS": str(server.make_url("/.well-known/jwks.json"))}
        verifier = IdentitySettings.from_env(env).verifier()
        assert verifier is not None
        for _ in range(3):
            assert (await verifier.verify(provider.token("u"))).user_id == "u"
    assert served == 1


def test_identity_tokens_are_told_from_quizmeshs_own_credentials_by_their_header(provider: TestProvider) -> None:
    # Where the edge puts a host's bearer token (host_token or identity_token): quiz_svc verifies it there.
    assert is_identity_token(provider.token("teacher"))
    claims = provider.claims("teacher")
    public = public_pem(provider.keys[provider.kid])
    for other in (
        Credentials(b"k" * 32).issue("host", "QUIZ1234"),  # HS256
        hmac_token_with(public, claims, provider.kid),
        unsigned_token(claims, provider.kid),
        "not-a-token",
        "",
    ):
        assert not is_identity_token(other)
