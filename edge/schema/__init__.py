"""Validating client frames against the published JSON Schema, `client-messages.schema.json`.

The schema is the contract clients are given; validating every frame against it keeps the edge honest
to it. Its `oneOf` has one branch per message type, each fixing `type` with a `const`, so a frame
matches the `oneOf` exactly when it matches the branch its own `type` names: the edge compiles one
validator per branch (envelope included) and picks it by `type`, which costs ~1.5 µs per frame instead
of ~30 µs for trying all branches (docs/protocol.md has the measurements).

A refused frame is explained with the stable codes of edge/protocol.py, in the order it checks them:
not an object or no string `type` is `invalid_message`, a bad `id` or field is `invalid_field` naming
the field (as `questions[1].time_limit_seconds`), a `type` with no branch is `unknown_type`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import fastjsonschema

SCHEMA_PATH: Final = Path(__file__).with_name("client-messages.schema.json")
SCHEMA: Final[Mapping[str, Any]] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))

Validator = Callable[[object], object]


@dataclass(frozen=True)
class Violation:
    """Why a frame does not match the schema, as the error frame will say it."""

    code: str
    message: str
    request_id: str | int | None


def _branch_type(branch: Mapping[str, Any]) -> str:
    return str(branch["properties"]["type"]["const"])


def _compile_branches() -> dict[str, tuple[Validator, Mapping[str, Any]]]:
    envelope = {key: value for key, value in SCHEMA.items() if key != "oneOf"}
    return {
        _branch_type(branch): (fastjsonschema.compile({**envelope, "allOf": [branch]}), branch)
        for branch in SCHEMA["oneOf"]
    }


BRANCHES: Final = _compile_branches()
_valid_id: Final[Validator] = fastjsonschema.compile({"$schema": SCHEMA["$schema"], **SCHEMA["properties"]["id"]})


def violation(frame: object) -> Violation | None:
    """None when the decoded frame matches the schema; otherwise what is wrong with it."""
    if isinstance(frame, dict):
        branch = BRANCHES.get(frame["type"]) if isinstance(frame.get("type"), str) else None
        if branch is not None:
            try:
                branch[0](frame)
            except fastjsonschema.JsonSchemaValueException as exc:
                return _explain(frame, branch[1], exc)
            return None
    return _explain(frame, None, None)


def _explain(
    frame: object, branch: Mapping[str, Any] | None, error: fastjsonschema.JsonSchemaValueException | None
) -> Violation:
    if not isinstance(frame, dict):
        return Violation("invalid_message", "the message must be a JSON object with a 'type' field", None)
    request_id = frame.get("id")
    try:
        _valid_id(request_id)
    except fastjsonschema.JsonSchemaValueException:
        return _invalid_field("id", SCHEMA["properties"]["id"], None)
    message_type = frame.get("type")
    if not isinstance(message_type, str):
        return Violation("invalid_message", "the message must have a string 'type' field", request_id)
    if branch is None or error is None:
        return Violation("unknown_type", f"unknown message type {message_type[:64]!r}", request_id)
    path = [str(part) for part in error.path[1:]]  # fastjsonschema's path starts at "data"
    if error.rule == "required" and isinstance(error.value, dict):
        missing = next(name for name in error.definition["required"] if name not in error.value)
        path.append(missing)
    elif error.rule == "anyOf" and isinstance(error.value, dict):
        # Alternatives of which one must be given (an answer's members): the first is named missing.
        path.append(error.definition["anyOf"][0]["required"][0])
    name, schema = _described_field(branch, path)
    return _invalid_field(name, schema, request_id)


def _invalid_field(name: str, schema: Mapping[str, Any], request_id: str | int | None) -> Violation:
    return Violation("invalid_field", f"field {name!r} is required and must be {schema['description']}", request_id)


def _described_field(branch: Mapping[str, Any], path: Sequence[str]) -> tuple[str, Mapping[str, Any]]:
    """The deepest field on path whose schema describes it: `questions[0].choices` for a bad choice,
    since a choice itself has no name a client would recognise."""
    node = branch
    name = ""
    best: tuple[str, Mapping[str, Any]] = ("", branch)
    for part in path:
        node = _resolve(node)
        if "items" in node:  # an array: part is an index
            node, name = node["items"], f"{name}[{part}]"
        else:
            node, name = node["properties"][part], f"{name}.{part}" if name else part
        if "description" in _resolve(node):
            best = (name, _resolve(node))
    return best


def _resolve(node: Mapping[str, Any]) -> Mapping[str, Any]:
    reference = node.get("$ref")
    if reference is None:
        return node
    resolved: Mapping[str, Any] = SCHEMA
    for key in reference.removeprefix("#/").split("/"):
        resolved = resolved[key]
    return resolved
