"""The one reader of quiz documents: JSON (create_quiz's shape), CSV and XLSX (one row per question).

It reads structure only: which fields there are and their types, into a `CreateQuizRequest`. The rules
(2 to 6 choices, time limits, what an estimate's range must be, ...) are quiz_svc's domain's, which
refuses a question by its position; `QuizDocument.locate` names the row or JSON path it came from.
The edge (the host page's import and create_quiz), quizctl and these errors share this module, which
sits in the runtime because none of them may import another. The layouts are in docs/protocol.md
("Quiz documents") with an example of each in docs/examples/.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from quizmesh.answer_values import decimal_text
from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from quizmesh.quiz_names import KINDS, POINTS_MODES

MAX_DOCUMENT_BYTES: Final = 2 * 1024 * 1024
DEFAULT_SECONDS: Final = 20
# A spreadsheet cell holding several values (choices, correct choices, accepted answers, items) separates
# them with this character, which such values cannot contain.
SEPARATOR: Final = "|"
COLUMNS: Final = (
    "kind",
    "text",
    "choices",
    "correct",
    "seconds",
    "points",
    "min",
    "max",
    "tolerance",
    "accent_insensitive",
    "typo_tolerant",
    "image",
    "audio",
    "choice_images",
)
_TRUE, _FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0", ""})


class DocumentError(ValueError):
    """A document that cannot be read; `where` is its row ("row 4") or JSON path ("questions[3].choices"),
    `problem` what is wrong: for a JSON field, what it must be ("a list of strings")."""

    def __init__(self, where: str, problem: str) -> None:
        is_field = bool(where) and not where.startswith("row ")
        super().__init__(f"{where} must be {problem}" if is_field else f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem


@dataclass
class QuizDocument:
    """A quiz as read: the request to create it, and where each question came from."""

    request: pb.CreateQuizRequest
    sources: list[str] = field(default_factory=list)

    def locate(self, question_index: int, message: str) -> str:
        """quiz_svc's refusal of question `question_index` ("question 3: ..."), naming its row or path."""
        prefix = f"question {question_index + 1}: "
        if 0 <= question_index < len(self.sources) and message.startswith(prefix):
            return f"{self.sources[question_index]}: {message.removeprefix(prefix)}"
        return message


# --- JSON ---

# What each field of a question must be, in the words of the JSON Schema's descriptions
# (edge/schema/client-messages.schema.json), which the edge checks first and this reader mirrors.
TEXT_LIMIT: Final = 4096
MEDIA_REFERENCE_LIMIT: Final = 200
_INT32_MAX: Final = 2**31 - 1
_EXPECTED: Final[Mapping[str, str]] = {
    "text": f"a non-empty string of at most {TEXT_LIMIT} characters",
    "kind": "one of " + ", ".join(repr(k) for k in KINDS),
    "points": "one of " + ", ".join(repr(p) for p in POINTS_MODES),
    "time_limit_seconds": f"an integer from 1 to {_INT32_MAX}",
    "choices": "a list of strings",
    "correct_choices": "a list of choice indices",
    "correct_answer": "true or false",
    "accepted_answers": "a list of strings",
    "accent_insensitive": "true or false",
    "typo_tolerant": "true or false",
    "items": "a list of strings",
    "estimate": "an object with min, max and answer",
    "number": "a number, or a decimal number as a string",
    "image": f"a string of at most {MEDIA_REFERENCE_LIMIT} characters",
    "audio": f"a string of at most {MEDIA_REFERENCE_LIMIT} characters",
    "choice_images": "a list of strings",
}
# The fields each kind needs besides text; a question without `kind` is a single choice.
REQUIRED_BY_KIND: Final[Mapping[str, tuple[str, ...]]] = {
    "single_choice": ("choices", "correct_choices"),
    "multiple_select": ("choices", "correct_choices"),
    "true_false": ("correct_answer",),
    "type_answer": ("accepted_answers",),
    "ordering": ("items",),
    "estimate": ("estimate",),
    "poll": ("choices",),
}


def _fits(name: str, value: object) -> bool:
    if name == "text":
        return isinstance(value, str) and 0 < len(value) <= TEXT_LIMIT
    if name in ("kind", "points"):
        return isinstance(value, str) and value in (KINDS if name == "kind" else POINTS_MODES)
    if name == "time_limit_seconds":
        return type(value) is int and 1 <= value <= _INT32_MAX
    if name in ("choices", "accepted_answers", "items", "choice_images"):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if name == "correct_choices":
        return isinstance(value, list) and all(type(v) is int and 0 <= v <= _INT32_MAX for v in value)
    if name in ("correct_answer", "accent_insensitive", "typo_tolerant"):
        return isinstance(value, bool)
    if name in ("image", "audio"):
        return isinstance(value, str) and len(value) <= MEDIA_REFERENCE_LIMIT
    return isinstance(value, dict)  # estimate


def _number(value: object, at: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DocumentError(at, _EXPECTED["number"])
    return decimal_text(value)


def question_from_json(raw: object, at: str = "") -> pb.Question:
    """One question in create_quiz's JSON shape (docs/protocol.md, "Question kinds"); `at` is its path
    with a trailing dot, as "questions[2].". Fields are checked as the JSON Schema checks them: those
    the kind needs present, then text present, then each field's type."""
    if not isinstance(raw, dict):
        raise DocumentError(at.rstrip("."), "an object")
    kind = raw.get("kind", "single_choice")
    needed = REQUIRED_BY_KIND.get(kind, ()) if isinstance(kind, str) else ()
    for name in (*needed, "text"):
        if name not in raw:
            raise DocumentError(at + name, _EXPECTED[name])
    for name, value in raw.items():
        if name in _EXPECTED and name != "number" and not _fits(name, value):
            raise DocumentError(at + name, _EXPECTED[name])
    estimate = raw.get("estimate")
    if isinstance(estimate, dict):
        numbers = {"tolerance": 0, **estimate}
        for name in ("min", "max", "answer", "tolerance"):
            if name not in numbers:
                raise DocumentError(f"{at}estimate.{name}", _EXPECTED["number"])
            numbers[name] = _number(numbers[name], f"{at}estimate.{name}")
    question = pb.Question(
        text=raw["text"],
        kind=KINDS[kind],
        time_limit_seconds=raw.get("time_limit_seconds", DEFAULT_SECONDS),
        points_mode=POINTS_MODES[raw.get("points", "standard")],
        image=raw.get("image", ""),
        audio=raw.get("audio", ""),
        choice_images=raw.get("choice_images", []),
    )
    if kind in ("single_choice", "multiple_select", "poll"):
        question.choices[:] = raw["choices"]
    if kind in ("single_choice", "multiple_select"):
        question.correct_choices[:] = raw["correct_choices"]
    elif kind == "true_false":
        question.correct_choices[:] = [0 if raw["correct_answer"] else 1]
    elif kind == "type_answer":
        question.accepted_answers[:] = raw["accepted_answers"]
        question.accent_insensitive = raw.get("accent_insensitive", False)
        question.typo_tolerant = raw.get("typo_tolerant", False)
    elif kind == "ordering":
        question.items[:] = raw["items"]
    elif kind == "estimate":
        question.estimate.CopyFrom(pb.EstimateSpec(**{n: numbers[n] for n in ("min", "max", "answer", "tolerance")}))
    return question


def question_to_json(question: pb.Question) -> dict[str, Any]:
    """A question as create_quiz takes it (the inverse of question_from_json), as the host reads it."""
    kind = next((name for name, value in KINDS.items() if value == question.kind), "single_choice")
    points = next(name for name, value in POINTS_MODES.items() if value == (question.points_mode or 1))
    fields: dict[str, Any] = {
        "kind": kind,
        "text": question.text,
        "time_limit_seconds": question.time_limit_seconds,
        "points": points,
    }
    if kind in ("single_choice", "multiple_select", "poll"):
        fields["choices"] = list(question.choices)
    if kind in ("single_choice", "multiple_select"):
        fields["correct_choices"] = list(question.correct_choices)
    elif kind == "true_false":
        fields["correct_answer"] = list(question.correct_choices) == [0]
    elif kind == "type_answer":
        fields["accepted_answers"] = list(question.accepted_answers)
        fields["accent_insensitive"] = question.accent_insensitive
        fields["typo_tolerant"] = question.typo_tolerant
    elif kind == "ordering":
        fields["items"] = list(question.items)
    elif kind == "estimate":
        e = question.estimate
        fields["estimate"] = {"min": e.min, "max": e.max, "answer": e.answer, "tolerance": e.tolerance}
    for name in ("image", "audio"):
        if getattr(question, name):
            fields[name] = getattr(question, name)
    if question.choice_images:
        fields["choice_images"] = list(question.choice_images)
    return fields


def read_json(document: object) -> QuizDocument:
    """create_quiz's fields without `type` ({title, questions, allow_late_join?}), or a list of questions.
    Other fields (an exported quiz's quiz_id, say) are ignored, so an exported quiz imports as a new one."""
    raw = {"questions": document} if isinstance(document, list) else document
    if not isinstance(raw, dict):
        raise DocumentError("", "a JSON object with 'title' and 'questions', or a list of questions")
    questions = raw.get("questions")
    if not isinstance(questions, list) or not questions:
        raise DocumentError("questions", "a non-empty list of questions")
    title = raw.get("title", "")
    if not isinstance(title, str):
        raise DocumentError("title", "a string")
    request = pb.CreateQuizRequest(title=title)
    late = raw.get("allow_late_join")
    if late is not None:
        if not isinstance(late, bool):
            raise DocumentError("allow_late_join", "true or false")
        request.allow_late_join = late
    sources = []
    for position, question in enumerate(questions):
        at = f"questions[{position}]"
        request.questions.append(question_from_json(question, at + "."))
        sources.append(at)
    return QuizDocument(request, sources)


# --- spreadsheets: CSV and XLSX, one row per question ---


def _cell_text(value: object) -> str:
    """A spreadsheet cell as text: numbers without a spurious ".0", booleans as true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(Decimal(repr(value)).normalize(), "f") if math.isfinite(value) else ""
    return str(value).strip()


def _split(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(SEPARATOR)] if cell else []


def _flag(cell: str, where: str, column: str) -> bool:
    folded = cell.casefold()
    if folded not in _TRUE | _FALSE:
        raise DocumentError(where, f"column '{column}' must be true or false, is {cell[:40]!r}")
    return folded in _TRUE


def _choice_numbers(cell: str, where: str) -> list[int]:
    numbers = _split(cell)
    if not numbers or not all(n.isdigit() and 1 <= int(n) <= 99 for n in numbers):
        expected = "column 'correct' must hold choice numbers from 1 (e.g. 2 or 1|3)"
        raise DocumentError(where, f"{expected}, is {cell[:40]!r}")
    return [int(n) - 1 for n in numbers]


def _row_question(cells: Mapping[str, str], where: str) -> pb.Question:
    kind = cells.get("kind") or "single_choice"
    if kind not in KINDS:
        raise DocumentError(where, f"column 'kind' must be one of {', '.join(KINDS)}, is {kind[:40]!r}")
    points = cells.get("points") or "standard"
    if points not in POINTS_MODES:
        raise DocumentError(where, f"column 'points' must be one of {', '.join(POINTS_MODES)}, is {points[:40]!r}")
    seconds = cells.get("seconds") or str(DEFAULT_SECONDS)
    if not seconds.isdigit():
        raise DocumentError(where, f"column 'seconds' must be a whole number, is {seconds[:40]!r}")
    if not cells.get("text"):
        raise DocumentError(where, "column 'text' is empty")
    question = pb.Question(
        text=cells["text"],
        kind=KINDS[kind],
        time_limit_seconds=int(seconds),
        points_mode=POINTS_MODES[points],
        image=cells.get("image", ""),
        audio=cells.get("audio", ""),
        choice_images=_split(cells.get("choice_images", "")),
    )
    correct = cells.get("correct", "")
    if kind in ("single_choice", "multiple_select", "poll"):
        question.choices[:] = _split(cells.get("choices", ""))
    if kind in ("single_choice", "multiple_select"):
        question.correct_choices[:] = _choice_numbers(correct, where)
    elif kind == "true_false":
        question.correct_choices[:] = [0 if _flag(correct, where, "correct") else 1]
    elif kind == "type_answer":
        question.accepted_answers[:] = _split(correct)
        question.accent_insensitive = _flag(cells.get("accent_insensitive", ""), where, "accent_insensitive")
        question.typo_tolerant = _flag(cells.get("typo_tolerant", ""), where, "typo_tolerant")
    elif kind == "ordering":
        question.items[:] = _split(cells.get("choices", ""))
    elif kind == "estimate":
        question.estimate.CopyFrom(
            pb.EstimateSpec(
                min=cells.get("min", ""),
                max=cells.get("max", ""),
                answer=correct,
                tolerance=cells.get("tolerance") or "0",
            )
        )
    return question


def read_rows(rows: Iterable[Sequence[object]]) -> QuizDocument:
    """A header row naming columns (COLUMNS; `text` required, order free), then one row per question.
    Rows are numbered from 1, the header included, as a spreadsheet numbers them; blank rows are skipped."""
    numbered: Iterator[tuple[int, Sequence[object]]] = enumerate(rows, start=1)
    header: list[str] = []
    for _, row in numbered:
        header = [_cell_text(c).casefold() for c in row]
        if any(header):
            break
    unknown = [name for name in header if name and name not in COLUMNS]
    if unknown:
        raise DocumentError("row 1", f"column {unknown[0][:40]!r} is not one of {', '.join(COLUMNS)}")
    if "text" not in header:
        raise DocumentError("row 1", "the header row must name a 'text' column (see docs/protocol.md)")
    request = pb.CreateQuizRequest()
    sources = []
    for number, row in numbered:
        cells = {name: _cell_text(value) for name, value in zip(header, row, strict=False) if name}
        if not any(cells.values()):
            continue
        where = f"row {number}"
        request.questions.append(_row_question(cells, where))
        sources.append(where)
    if not request.questions:
        raise DocumentError("", "the spreadsheet has no question rows under its header")
    return QuizDocument(request, sources)


def read_csv(content: bytes) -> QuizDocument:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DocumentError("", "the CSV file is not UTF-8 text") from None
    # Spreadsheets in many locales save CSV with semicolons: the header row's commonest separator wins.
    header = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=header.count)
    return read_rows(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def read_xlsx(content: bytes) -> QuizDocument:
    """The first worksheet of an XLSX workbook, read with openpyxl (defusedxml guards its XML parsing)."""
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise DocumentError("", f"the file is not an XLSX workbook ({exc})") from None
    try:
        return read_rows(workbook.worksheets[0].iter_rows(values_only=True))
    finally:
        workbook.close()


def read_document(content: bytes, name: str = "") -> QuizDocument:
    """Any quiz document, by its name's extension, else by its bytes: XLSX is a ZIP archive, JSON starts
    with '{' or '[', anything else is read as CSV."""
    if len(content) > MAX_DOCUMENT_BYTES:
        raise DocumentError("", f"the document has more than {MAX_DOCUMENT_BYTES} bytes")
    lowered = name.casefold()
    if lowered.endswith(".xlsx") or (not lowered.endswith((".csv", ".json")) and content[:4] == b"PK\x03\x04"):
        return read_xlsx(content)
    if lowered.endswith(".json") or (not lowered.endswith(".csv") and content.lstrip()[:1] in (b"{", b"[")):
        try:
            return read_json(json.loads(content.decode("utf-8-sig")))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DocumentError("", f"the document is not valid JSON: {exc}") from None
    return read_csv(content)
