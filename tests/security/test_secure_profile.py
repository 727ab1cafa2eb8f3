"""Credentials to Kafka and Redis, against `scripts/infra.sh up --secure` (a private set of servers):
Kafka listens on SASL_SSL only with SCRAM users, Redis on TLS only with its default user off and the
services' ACL user restricted to scripts/redis/quizmesh.acl. Every secret reaches the services as a file
(`*_FILE`), as Kubernetes mounts them.

A whole stack plays a quiz there; a wrong password, or a CA that does not vouch for the server, stops a
service at start-up with an error naming the setting to fix.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import AuthenticationError, NoPermissionError
from redis.exceptions import ConnectionError as RedisConnectionError

from bench.procs import free_port
from quizmesh.redis_client import connect_single
from quizmesh.settings import RedisCredentials
from tests.support.game import play_and_store
from tests.support.private_infra import PrivateInfra, private_infra_set
from tests.support.stack import SIGNING_KEY, process_stack, run_quizmesh

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def secure() -> Iterator[PrivateInfra]:
    with private_infra_set("secure", "--secure") as infra:
        yield infra


async def test_a_quiz_is_played_over_kafka_scram_and_a_redis_acl_user(secure: PrivateInfra, tmp_path: Path) -> None:
    env = secure.service_env
    assert env["QUIZMESH_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["QUIZMESH_REDIS_URL"].startswith("rediss://")
    assert "QUIZMESH_KAFKA_PASSWORD" not in env and Path(env["QUIZMESH_KAFKA_PASSWORD_FILE"]).is_file()

    async with process_stack(tmp_path / "logs", extra_env=env) as stack:
        await play_and_store(stack)


async def test_redis_lets_the_services_user_do_only_what_quizmesh_needs(secure: PrivateInfra) -> None:
    url = secure.redis_url
    services = connect_single(url, credentials=RedisCredentials.from_env(secure.service_env))
    anonymous = connect_single(url, credentials=RedisCredentials(ca_file=secure.service_env["QUIZMESH_REDIS_CA_FILE"]))
    plaintext = connect_single(url.replace("rediss://", "redis://"))
    try:
        await services.set("qz:{acl-test}:probe", b"1", ex=60)
        assert await services.get("qz:{acl-test}:probe") == b"1"
        with pytest.raises(NoPermissionError):
            await services.set("elsewhere:probe", b"1")  # outside qz:* and lb:*
        with pytest.raises(NoPermissionError):
            await services.keys("qz:*")
        with pytest.raises(NoPermissionError):
            await services.flushall()
        with pytest.raises(AuthenticationError):
            await anonymous.ping()  # the default user is off
        with pytest.raises(RedisConnectionError):
            await plaintext.ping()  # TLS only
    finally:
        for client in (services, anonymous, plaintext):
            await client.aclose()


def _service_env(secure: PrivateInfra, **changes: str) -> dict[str, str]:
    return {
        **os.environ,
        **secure.service_env,
        "QUIZMESH_SIGNING_KEY": SIGNING_KEY,
        "QUIZMESH_QUIZ_ADDR": f"127.0.0.1:{free_port()}",
        "QUIZMESH_LEADERBOARD_ADDR": f"127.0.0.1:{free_port()}",
        "QUIZMESH_PERSISTENCE_ADDR": f"127.0.0.1:{free_port()}",
        "QUIZMESH_LOG_FORMAT": "plain",
        **changes,
    }


@pytest.mark.parametrize(
    ("service", "password", "refusal"),
    [
        *(
            (service, "QUIZMESH_KAFKA_PASSWORD_FILE", "Kafka at {kafka} refused the user 'quizmesh' (SCRAM-SHA-512)")
            for service in ("quiz-svc", "leaderboard-svc", "persistence-svc")
        ),
        *(
            (
                service,
                "QUIZMESH_REDIS_PASSWORD_FILE",
                "Redis refused the user 'quizmesh': invalid username-password pair",
            )
            for service in ("quiz-svc", "leaderboard-svc")
        ),
    ],
)
async def test_a_wrong_password_stops_a_service_at_start_up_naming_what_to_fix(
    secure: PrivateInfra, service: str, password: str, refusal: str, tmp_path: Path
) -> None:
    (tmp_path / "password").write_text("not-the-password\n")
    env = _service_env(secure, **{password: str(tmp_path / "password")})

    refused = await asyncio.to_thread(run_quizmesh, service, env=env, cwd=tmp_path)

    assert refused.returncode == 3, refused.stderr[-2000:]
    assert f"quizmesh {service}: cannot start: {refusal.format(kafka=secure.kafka_bootstrap)}" in refused.stderr
    setting = password.removesuffix("_PASSWORD_FILE")
    assert f"Check {setting}_USERNAME and {setting}_PASSWORD (or {setting}_PASSWORD_FILE)" in refused.stderr


async def test_a_ca_that_does_not_vouch_for_kafka_stops_a_service(secure: PrivateInfra, tmp_path: Path) -> None:
    # The CA of the system, which never signed the test server's certificate.
    env = _service_env(secure, QUIZMESH_KAFKA_CA_FILE="/etc/ssl/certs/ca-certificates.crt")

    refused = await asyncio.to_thread(run_quizmesh, "persistence-svc", env=env, cwd=tmp_path)

    assert refused.returncode == 3, refused.stderr[-2000:]
    assert (
        f"Kafka at {secure.kafka_bootstrap} presented a certificate that "
        "QUIZMESH_KAFKA_CA_FILE=/etc/ssl/certs/ca-certificates.crt does not vouch for"
    ) in refused.stderr
