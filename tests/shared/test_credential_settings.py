"""Credentials to Kafka and Redis from the environment: what each setting turns into for the clients, and
the mistakes refused at start-up with the variable named (the servers' side is
tests/security/test_secure_profile.py)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from quizmesh.eventbus.kafka import connection_options
from quizmesh.redis_client import connect_single
from quizmesh.settings import Engines, KafkaCredentials, RedisCredentials, SettingsError

SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"


def test_nothing_set_is_plain_text_without_a_user() -> None:
    engines = Engines.from_env({})
    assert engines.kafka_credentials == KafkaCredentials()
    assert connection_options("k:9092", engines.kafka_credentials) == {
        "bootstrap_servers": "k:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert engines.redis_credentials == RedisCredentials()


def test_a_scram_user_over_tls_reads_its_password_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("s3cret\n")
    credentials = KafkaCredentials.from_env(
        {
            "QUIZMESH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "QUIZMESH_KAFKA_USERNAME": "quizmesh",
            "QUIZMESH_KAFKA_PASSWORD_FILE": str(tmp_path / "password"),
            "QUIZMESH_KAFKA_CA_FILE": SYSTEM_CAS,
        }
    )
    assert "s3cret" not in repr(credentials)
    options = connection_options("k:9093", credentials)
    context = options.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    assert options == {
        "bootstrap_servers": "k:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "quizmesh",
        "sasl_plain_password": "s3cret",
    }


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"QUIZMESH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs a user: set QUIZMESH_KAFKA_USERNAME and"),
        (
            {"QUIZMESH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "QUIZMESH_KAFKA_USERNAME": "quizmesh"},
            "QUIZMESH_KAFKA_PASSWORD_FILE",
        ),
        ({"QUIZMESH_KAFKA_USERNAME": "quizmesh"}, "PLAINTEXT sends no user: choose SASL_SSL"),
        ({"QUIZMESH_KAFKA_CA_FILE": SYSTEM_CAS}, "uses no TLS: choose SSL or SASL_SSL"),
        (
            {"QUIZMESH_KAFKA_SECURITY_PROTOCOL": "SSL", "QUIZMESH_KAFKA_CA_FILE": "/nonexistent/ca.pem"},
            "QUIZMESH_KAFKA_CA_FILE='/nonexistent/ca.pem' cannot be read",
        ),
        ({"QUIZMESH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL_PLEASE"}, "QUIZMESH_KAFKA_SECURITY_PROTOCOL='SASL_SSL_PLEASE'"),
        ({"QUIZMESH_KAFKA_SASL_MECHANISM": "PLAIN"}, "QUIZMESH_KAFKA_SASL_MECHANISM='PLAIN' must be one of"),
        ({"QUIZMESH_REDIS_USERNAME": "quizmesh"}, "QUIZMESH_REDIS_USERNAME is set without a password"),
        ({"QUIZMESH_REDIS_CA_FILE": SYSTEM_CAS}, "QUIZMESH_REDIS_URL is not a rediss:// URL"),
        ({"QUIZMESH_REDIS_PASSWORD_FILE": "/nonexistent/password"}, "QUIZMESH_REDIS_PASSWORD_FILE='/nonexistent/"),
    ],
)
def test_a_mistake_is_refused_naming_the_variable(env: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Engines.from_env(env)
    assert problem in str(refused.value)


async def test_a_redis_client_logs_in_as_the_user_over_tls() -> None:
    credentials = RedisCredentials(username="quizmesh", password="s3cret", ca_file=SYSTEM_CAS)
    client = connect_single("rediss://cache.example:6380/0", credentials=credentials)
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"], kwargs["ssl_ca_certs"]) == ("quizmesh", "s3cret", SYSTEM_CAS)
        assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    finally:
        await client.aclose()
