"""A test identity provider: keys generated in the test, its JWKS in a file, and tokens it signs (or
forges) for the identity verifier to judge."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from quizmesh.identity import Identities, IdentitySettings, IdentityVerifier

ISSUER = "https://id.example.test/"
AUDIENCE = "quizmesh-test"


def new_key(algorithm: str) -> PrivateKeyTypes:
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class TestProvider:
    """Signs identity tokens with its current key and publishes its public keys as a JWKS file."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, directory: Path, algorithm: str = "RS256") -> None:
        self.algorithm = algorithm
        self.jwks_path = directory / "jwks.json"
        self.keys: dict[str, PrivateKeyTypes] = {}
        self.rotate()

    def rotate(self) -> str:
        """Adds a new signing key (published beside the old ones) and returns its key ID."""
        kid = f"key-{len(self.keys) + 1}"
        self.keys[kid] = new_key(self.algorithm)
        self.kid = kid
        self.publish()
        return kid

    def publish(self) -> None:
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        entries = []
        for kid, key in self.keys.items():
            entry = json.loads(algorithm.to_jwk(key.public_key()))
            entries.append({**entry, "kid": kid, "alg": self.algorithm, "use": "sig"})
        self.jwks_path.write_text(json.dumps({"keys": entries}))

    def claims(self, subject: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": now,
            "exp": now + 600,
            "name": f"User {subject}",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, subject: str, *, key: PrivateKeyTypes | None = None, kid: str | None = None, **claims: Any) -> str:
        """A token for subject, signed with the current key unless another is given."""
        return jwt.encode(
            self.claims(subject, **claims),
            key if key is not None else self.keys[self.kid],  # type: ignore[arg-type]
            algorithm=self.algorithm,
            headers={"kid": kid if kid is not None else self.kid},
        )

    def settings(self, mode: str = "both") -> IdentitySettings:
        return IdentitySettings.from_env(self.env(mode))

    def env(self, mode: str = "both") -> Mapping[str, str]:
        return {
            "QUIZMESH_IDENTITY_MODE": mode,
            "QUIZMESH_IDENTITY_JWKS": str(self.jwks_path),
            "QUIZMESH_IDENTITY_ISSUER": ISSUER,
            "QUIZMESH_IDENTITY_AUDIENCE": AUDIENCE,
            "QUIZMESH_IDENTITY_ALGORITHM": self.algorithm,
        }

    def identities(self, mode: str = "both") -> Identities:
        settings = self.settings(mode)
        verifier = settings.verifier()
        assert isinstance(verifier, IdentityVerifier)
        return Identities(verifier, anonymous_allowed=settings.anonymous_allowed)


def unsigned_token(claims: Mapping[str, Any], kid: str) -> str:
    """A token with `alg: none` and no signature."""
    return jwt.encode(dict(claims), None, algorithm="none", headers={"kid": kid})  # type: ignore[arg-type]


def hmac_token_with(secret: bytes, claims: Mapping[str, Any], kid: str) -> str:
    """A token signed with HS256, using `secret` (say, the provider's public key) as the HMAC key.

    PyJWT refuses to sign with a PEM key as an HMAC secret, so the token is assembled by hand, as an
    attacker would."""
    import base64
    import hashlib
    import hmac

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = part(json.dumps(dict(claims)).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{part(signature)}"
