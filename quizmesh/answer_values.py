"""`AnswerValue` (quizmesh.quiz.v1) as compact JSON, the shape the WebSocket protocol, the results
database and the docs give it: {"choice": 1}, {"choices": [0, 2]}, {"truth": true}, {"text": "..."},
{"order": [2, 0, 1]}, {"number": "12.5"}. In the runtime because the edge, persistence_svc and quizctl
all read or write it, and none may import another."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from quizmesh.quiz.v1 import answer_value_pb2 as pb

# The JSON member of each shape, in the order a message is searched for one.
MEMBERS: Final = ("choice", "choices", "truth", "text", "order", "number")


def to_json(value: pb.AnswerValue, choice: int = 0) -> dict[str, Any]:
    """The compact form; an unset value is `choice` (a single choice answer from before kinds)."""
    which = value.WhichOneof("value")
    if which is None:
        return {"choice": choice}
    if which == "choices":
        return {"choices": list(value.choices.choices)}
    if which == "order":
        return {"order": list(value.order.positions)}
    return {which: getattr(value, which)}


def from_json(fields: Mapping[str, Any]) -> pb.AnswerValue:
    """The value of a compact form already checked for its member's type (see MEMBERS)."""
    if "choices" in fields:
        return pb.AnswerValue(choices=pb.ChoiceSet(choices=fields["choices"]))
    if "order" in fields:
        return pb.AnswerValue(order=pb.ItemOrder(positions=fields["order"]))
    for member in ("choice", "truth", "text", "number"):
        if member in fields:
            return pb.AnswerValue(**{member: fields[member]})
    raise ValueError(f"an answer needs one of {', '.join(MEMBERS)}")


def decimal_text(value: int | float | str) -> str:
    """A JSON number as decimal text, a float by its shortest round-trip form ("0.1", not 0.1000000000000000055);
    a string as written (quiz_svc checks it is a number)."""
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return str(value)
