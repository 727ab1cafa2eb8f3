"""The edge's settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.schema import SCHEMA
from edge.settings import Settings
from quizmesh.settings import SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.address, settings.quiz_addr, settings.leaderboard_addr) == (
        "127.0.0.1:8080",
        "127.0.0.1:50051",
        "127.0.0.1:50052",
    )
    assert (settings.leaderboard_top_n, settings.answer_batch_size, settings.answer_batch_linger_ms) == (10, 256, 2)
    assert settings.answer_batches_in_flight == 1
    assert settings.allowed_origins == frozenset()
    assert (settings.max_frame_bytes, settings.heartbeat_s) == (64 * 1024, 20.0)


def test_overrides_and_origin_list() -> None:
    settings = Settings.from_env(
        {
            "QUIZMESH_EDGE_PORT": "0",
            "QUIZMESH_EDGE_ALLOWED_ORIGINS": " https://Quiz.example/ ,http://localhost:3000,",
            "QUIZMESH_EDGE_LEADERBOARD_TOP_N": "25",
            "QUIZMESH_EDGE_ANSWER_BATCHES_IN_FLIGHT": "6",
        }
    )
    assert settings.answer_batches_in_flight == 6
    assert settings.port == 0
    assert settings.allowed_origins == frozenset({"https://quiz.example", "http://localhost:3000"})
    assert settings.leaderboard_top_n == 25


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("QUIZMESH_EDGE_PORT", "http"),
        ("QUIZMESH_EDGE_PORT", "70000"),
        ("QUIZMESH_EDGE_LEADERBOARD_TOP_N", "0"),
        ("QUIZMESH_EDGE_ANSWER_BATCH_SIZE", "0"),
        ("QUIZMESH_EDGE_ANSWER_BATCHES_IN_FLIGHT", "0"),
        ("QUIZMESH_EDGE_ALLOWED_ORIGINS", "quiz.example"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_the_frame_limit_the_edge_enforces_is_the_one_documented() -> None:
    limit = f"{Settings.from_env({}).max_frame_bytes:,} bytes"
    docs = Path(__file__).resolve().parents[2] / "docs"
    assert limit in SCHEMA["description"]
    assert limit in (docs / "protocol.md").read_text()
    assert limit in (docs / "reliability.md").read_text()
