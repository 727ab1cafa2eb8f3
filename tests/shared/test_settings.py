"""Declared variables (quizmesh/settings.py): how each kind reads its value, and the errors that name it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from quizmesh.settings import (
    Choice,
    Engines,
    FromEnvironment,
    Integer,
    Number,
    Secret,
    SettingsError,
    Text,
    Variable,
    nested,
    optional_setting,
    setting,
)

PORT = Integer("EXAMPLE_PORT", "A port.", default=8080, minimum=1, maximum=65535)
RATIO = Number("EXAMPLE_RATIO", "A share.", default=0.5, minimum=0.0, maximum=1.0)
MODE = Choice("EXAMPLE_MODE", "A mode.", default="a", choices=("a", "b"))
TOKEN = Secret("EXAMPLE_TOKEN", "A secret.", default="fallback")
NAME = Text("EXAMPLE_NAME", "A name.", default="quiz", unset="the component's own name")


@pytest.mark.parametrize(
    ("variable", "env", "value"),
    [
        (PORT, {}, 8080),
        (PORT, {"EXAMPLE_PORT": ""}, 8080),
        (PORT, {"EXAMPLE_PORT": "65535"}, 65535),
        (RATIO, {"EXAMPLE_RATIO": "0.25"}, 0.25),
        (MODE, {"EXAMPLE_MODE": "b"}, "b"),
        (TOKEN, {}, "fallback"),
        (TOKEN, {"EXAMPLE_TOKEN": "s3cret"}, "s3cret"),
        (NAME, {"EXAMPLE_NAME": ""}, ""),
    ],
)
def test_each_kind_reads_its_value_or_its_default(variable: Variable[Any], env: dict[str, str], value: object) -> None:
    assert variable.read(env) == value


@pytest.mark.parametrize(
    ("variable", "raw", "problem"),
    [
        (PORT, "eighty", "is not an integer"),
        (PORT, "0", "must be at least 1"),
        (PORT, "70000", "must be at most 65535"),
        (RATIO, "half", "is not a number"),
        (RATIO, "1.5", "must be between 0 and 1"),
        (MODE, "c", "must be one of a, b"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(variable: Variable[Any], raw: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable.name}=.*{problem}"):
        variable.read({variable.name: raw})


def test_a_secret_comes_from_the_file_its_file_variable_names(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("from-a-file\n")
    assert TOKEN.read({"EXAMPLE_TOKEN_FILE": str(secret_file)}) == "from-a-file"
    assert TOKEN.names == ("EXAMPLE_TOKEN", "EXAMPLE_TOKEN_FILE")
    with pytest.raises(SettingsError, match=r"EXAMPLE_TOKEN_FILE=.* cannot be read"):
        TOKEN.read({"EXAMPLE_TOKEN_FILE": str(tmp_path / "missing")})


def test_an_optional_variable_is_none_until_set() -> None:
    assert NAME.read_if_set({}) is None
    assert NAME.read_if_set({"EXAMPLE_NAME": "edge"}) == "edge"
    assert NAME.default_text == "the component's own name"
    assert PORT.default_text == "`8080`" and PORT.allowed_text == "An integer, 1 to 65535."


def test_the_engines_default_to_the_real_infrastructure_on_the_local_ports() -> None:
    engines = Engines.from_env({})
    assert (engines.event_bus, engines.state, engines.database) == ("kafka", "redis", "postgres")
    assert engines.postgres_dsn == "postgresql://quizmesh@127.0.0.1:15432/quizmesh"


@dataclass(frozen=True)
class Inner(FromEnvironment):
    token: str | None = setting(TOKEN)


@dataclass(frozen=True)
class Example(FromEnvironment):
    port: int = setting(PORT)
    percent: float = setting(RATIO, lambda ratio: ratio * 100)
    name: str | None = optional_setting(NAME)
    inner: Inner = nested(Inner)
    tunable: int = 3

    def check(self, env: Mapping[str, str]) -> None:
        if self.port == 9999 and self.name is None:
            raise SettingsError("EXAMPLE_PORT=9999 needs EXAMPLE_NAME")


def test_a_settings_class_declares_the_variables_of_its_fields_in_their_order() -> None:
    assert Example.VARIABLES == (PORT, RATIO, NAME, TOKEN)


def test_a_settings_field_defaults_to_its_variables_converted_default() -> None:
    assert Example() == Example.from_env({}) == Example(8080, 50.0, None, Inner("fallback"), 3)


def test_from_env_reads_converts_and_checks_every_declared_field() -> None:
    env = {"EXAMPLE_PORT": "81", "EXAMPLE_RATIO": "0.25", "EXAMPLE_NAME": "edge", "EXAMPLE_TOKEN": "s3cret"}
    assert Example.from_env(env) == Example(81, 25.0, "edge", Inner("s3cret"), 3)
    with pytest.raises(SettingsError, match="EXAMPLE_PORT=9999 needs EXAMPLE_NAME"):
        Example.from_env({"EXAMPLE_PORT": "9999"})


def test_a_secret_setting_stays_out_of_the_repr() -> None:
    assert "s3cret" not in repr(Inner("s3cret"))
