"""edge/schema/client-messages.schema.json and edge/protocol.py describe the same messages.

The schema is what clients are given; protocol.py's typed parsing is what the edge runs after it.
They must agree on every message type and on every frame: same acceptance, same error code, same
message naming the same field. The edge's per-type validators must also agree with the schema's
`oneOf` as a reference implementation (jsonschema) reads it.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import orjson
import pytest

from edge import protocol
from edge import schema as client_schema
from edge.protocol import ClientError

REFERENCE = jsonschema.Draft202012Validator(client_schema.SCHEMA)

QUESTION = {"text": "Capital of Peru?", "choices": ["Lima", "Cusco"], "correct_choices": [0], "time_limit_seconds": 20}
# One question of each other kind, with every field that kind takes.
KIND_QUESTIONS: list[dict[str, Any]] = [
    {**QUESTION, "kind": "multiple_select", "choice_images": ["a.png", ""], "image": "m.png", "audio": "m.mp3"},
    {"kind": "true_false", "text": "Lima is in Peru", "correct_answer": True},
    {
        "kind": "type_answer",
        "text": "Colour?",
        "accepted_answers": ["colour"],
        "accent_insensitive": True,
        "typo_tolerant": False,
    },
    {"kind": "ordering", "text": "Order", "items": ["I", "am", "here"], "time_limit_seconds": 30},
    {"kind": "estimate", "text": "Year?", "estimate": {"min": 1900, "max": "2000", "answer": 1969.5, "tolerance": 5}},
    {"kind": "poll", "text": "Best?", "choices": ["a", "b"], "points": "none"},
]
VALID: list[dict[str, Any]] = [
    *({"type": "create_quiz", "title": "K", "questions": [question]} for question in KIND_QUESTIONS),
    *(
        {"type": "submit_answer", "question_index": 1, member: value}
        for member, value in [
            ("choices", [0, 2]),
            ("truth", False),
            ("text", "colour"),
            ("order", [2, 0, 1]),
            ("number", 1969.5),
            ("number", "-3.25"),
        ]
    ),
    {"type": "join_quiz", "id": "1", "quiz_id": "G8KWN4BS", "nickname": "Ada"},
    {"type": "resume", "id": 2, "player_token": "eyJ.x.y"},
    {"type": "submit_answer", "id": "3", "question_index": 0, "choice": 1},
    {"type": "leave_quiz"},
    {"type": "create_quiz", "title": "T", "questions": [QUESTION, {**QUESTION, "points": "double"}]},
    {"type": "create_quiz", "title": "T", "questions": [QUESTION], "allow_late_join": False},
    {"type": "host_quiz", "quiz_id": "G8KWN4BS", "host_token": "eyJ.h.t"},
    {"type": "host_quiz", "quiz_id": "G8KWN4BS", "identity_token": "eyJ.i.t"},
    {"type": "host_quiz", "quiz_id": "G8KWN4BS", "host_token": "eyJ.h.t", "identity_token": "eyJ.i.t"},
    {"type": "start_quiz"},
    {"type": "start_quiz", "quiz_id": "G8KWN4BS", "identity_token": "eyJ.i.t"},
    {"type": "start_session", "id": "s", "quiz_id": "G8KWN4BS", "identity_token": "eyJ.i.t"},
    {"type": "start_session", "quiz_id": "G8KWN4BS", "host_token": "eyJ.h.t"},
    {"type": "next_question", "quiz_id": "G8KWN4BS", "host_token": "eyJ.h.t"},
    {"type": "close_question", "quiz_id": None},
    {"type": "end_quiz", "host_token": "eyJ.h.t"},
    {"type": "set_leaderboard_visibility", "visible": True},
    {"type": "kick_player", "player_id": "p1", "quiz_id": "G8KWN4BS"},
    {"type": "get_state", "quiz_id": "G8KWN4BS"},
    {"type": "ping", "id": None, "client": "v2"},
]
JUNK: list[object] = [None, True, 0, -1, 2**31, 1.5, "", "x", "y" * 5000, [], [1], ["a"], {}, {"k": 1}]
BAD_ENVELOPES: list[object] = [
    [1, 2],
    "join_quiz",
    7,
    None,
    {},
    {"type": 7},
    {"type": None, "id": "9"},
    {"type": "fly_to_moon", "id": "r1"},
    {"type": "ping", "id": {"nested": 1}},
    {"type": "ping", "id": False},
    {"type": "ping", "id": "i" * 129},
    {"id": 4},
]


def _mutations(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """Every field of frame, and of its first question, removed or replaced by each junk value."""
    out: list[dict[str, Any]] = []
    for name in [key for key in frame if key != "type"]:
        out.append({key: value for key, value in frame.items() if key != name})
        out.extend({**frame, name: junk} for junk in JUNK)
    if frame["type"] == "create_quiz":
        for name in [*frame["questions"][0], "points", "kind"]:
            for junk in [*JUNK, "missing"]:
                mutated = copy.deepcopy(frame)
                if junk == "missing":
                    mutated["questions"][0].pop(name, None)
                else:
                    mutated["questions"][0][name] = junk
                out.append(mutated)
    return out


CORPUS: list[object] = [*BAD_ENVELOPES, *VALID, *(m for frame in VALID for m in _mutations(frame))]


def _by_parser(frame: object) -> tuple[str, str, object] | None:
    try:
        protocol.parse_fields(frame)
    except ClientError as exc:
        return exc.code, exc.message, exc.request_id
    return None


def _by_schema(frame: object) -> tuple[str, str, object] | None:
    violation = client_schema.violation(frame)
    return None if violation is None else (violation.code, violation.message, violation.request_id)


def test_the_schema_and_the_parser_know_the_same_message_types() -> None:
    in_schema = [branch["properties"]["type"]["const"] for branch in client_schema.SCHEMA["oneOf"]]
    assert len(in_schema) == len(set(in_schema))
    assert set(in_schema) == set(protocol.PARSERS)


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert client_schema.SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(client_schema.SCHEMA)


@pytest.mark.parametrize("frame", CORPUS, ids=lambda frame: orjson.dumps(frame).decode()[:80])
def test_the_schema_accepts_and_refuses_exactly_what_the_parser_does(frame: object) -> None:
    by_parser = _by_parser(frame)
    assert _by_schema(frame) == by_parser
    assert REFERENCE.is_valid(frame) == (by_parser is None)


def test_the_corpus_covers_every_error_code_of_the_envelope_and_fields() -> None:
    codes = {result[0] for result in map(_by_parser, CORPUS) if result is not None}
    assert codes == {"invalid_message", "unknown_type", "invalid_field"}
    assert sum(_by_parser(frame) is None for frame in CORPUS) > len(VALID)


def test_integral_floats_pass_the_schema_but_not_the_parser() -> None:
    # JSON Schema's "integer" includes 1.0; the parser wants a JSON integer. The edge still refuses it.
    frame = {"type": "submit_answer", "question_index": 1.0, "choice": 0}
    assert client_schema.violation(frame) is None
    with pytest.raises(ClientError) as caught:
        protocol.parse_message(orjson.dumps(frame))
    by_parser = _by_parser(frame)
    assert by_parser is not None
    assert (caught.value.code, caught.value.message) == by_parser[:2]


def test_parse_message_checks_the_schema_before_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = client_schema.Violation("invalid_field", "refused by the schema", "r9")
    monkeypatch.setattr(client_schema, "violation", lambda frame: refused)
    with pytest.raises(ClientError) as caught:
        protocol.parse_message('{"type": "ping", "id": "r9"}')
    assert (caught.value.code, caught.value.message, caught.value.request_id) == (
        "invalid_field",
        refused.message,
        "r9",
    )
