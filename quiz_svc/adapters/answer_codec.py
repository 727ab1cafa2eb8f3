"""An answer value as JSON text, the form the game store keeps it in (opaque to its scripts).

The shapes are the protobuf JSON mapping of `AnswerValue`, which is also the WebSocket protocol's:
{"choice": 1}, {"choices": [0, 2]}, {"truth": true}, {"text": "..."}, {"order": [2, 0, 1]},
{"number": "12.5"}.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from quiz_svc.kinds import (
    AnswerValue,
    ChoiceAnswer,
    ChoicesAnswer,
    NumberAnswer,
    OrderAnswer,
    TextAnswer,
    TruthAnswer,
    number_text,
)


def encode_value(value: AnswerValue) -> str:
    fields: dict[str, Any]
    if isinstance(value, ChoiceAnswer):
        fields = {"choice": value.choice}
    elif isinstance(value, ChoicesAnswer):
        fields = {"choices": sorted(value.choices)}
    elif isinstance(value, TruthAnswer):
        fields = {"truth": value.truth}
    elif isinstance(value, TextAnswer):
        fields = {"text": value.text}
    elif isinstance(value, OrderAnswer):
        fields = {"order": list(value.positions)}
    else:
        fields = {"number": number_text(value.number)}
    return orjson.dumps(fields).decode()


def decode_value(text: str | bytes) -> AnswerValue:
    fields: dict[str, Any] = orjson.loads(text)
    if "choice" in fields:
        return ChoiceAnswer(int(fields["choice"]))
    if "choices" in fields:
        return ChoicesAnswer(frozenset(int(c) for c in fields["choices"]))
    if "truth" in fields:
        return TruthAnswer(bool(fields["truth"]))
    if "text" in fields:
        return TextAnswer(str(fields["text"]))
    if "order" in fields:
        return OrderAnswer(tuple(int(p) for p in fields["order"]))
    return NumberAnswer(Decimal(fields["number"]))
