"""The one reader of quiz documents: JSON, CSV and XLSX read into the same request, a bad row refused
with its number and the reason, and quiz_svc's refusal of a question located in its document."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from openpyxl import Workbook

from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from quizmesh.quiz_document import DocumentError, question_to_json, read_document

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def _xlsx(rows: list[list[object]]) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_the_examples_in_json_csv_and_xlsx_read_as_the_same_questions() -> None:
    read = [read_document((EXAMPLES / name).read_bytes(), name) for name in ("kinds.json", "kinds.csv", "kinds.xlsx")]
    json_doc, csv_doc, xlsx_doc = read
    assert list(json_doc.request.questions) == list(csv_doc.request.questions) == list(xlsx_doc.request.questions)
    assert len(json_doc.request.questions) == 7
    assert json_doc.sources[3] == "questions[3]" and csv_doc.sources[3] == "row 5"
    # Named by extension or, without one, by the bytes.
    assert read_document((EXAMPLES / "kinds.xlsx").read_bytes()).request.questions == xlsx_doc.request.questions


def test_a_question_read_back_as_json_reads_the_same() -> None:
    document = read_document((EXAMPLES / "kinds.json").read_bytes(), "kinds.json")
    again = read_document(json.dumps({"questions": [question_to_json(q) for q in document.request.questions]}).encode())
    assert list(again.request.questions) == list(document.request.questions)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"text,colour\nq,x\n", "row 1: column 'colour' is not one of kind, text"),
        (b"kind,choices\nsingle_choice,a|b\n", "row 1: the header row must name a 'text' column"),
        (b"text,choices,correct\nOk?,a|b,1\n\nBad?,a|b,0\n", "row 4: column 'correct' must hold choice numbers from 1"),
        (b"text,kind\nq,essay\n", "row 2: column 'kind' must be one of single_choice"),
        (b"text,choices,correct,seconds\nq,a|b,1,soon\n", "row 2: column 'seconds' must be a whole number"),
        (b"text,kind,correct\nq,true_false,maybe\n", "row 2: column 'correct' must be true or false"),
        (b"text;choices;correct\nq;a|b;1\n;;\n", None),
        (b"text\n", "the spreadsheet has no question rows"),
        (b"\xff\xfe", "the CSV file is not UTF-8 text"),
        (b'{"questions": [{"text": "q", "kind": "ordering"}]}', "questions[0].items must be a list of strings"),
        (
            b'{"questions": [{"kind": "estimate", "text": "q", "estimate": {"min": 1, "max": true, "answer": 2}}]}',
            "questions[0].estimate.max must be a number, or a decimal number as a string",
        ),
        (b'{"questions": []}', "questions must be a non-empty list of questions"),
        (b'{"questions": [', "the document is not valid JSON"),
    ],
)
def test_a_bad_document_is_refused_with_where_and_why(content: bytes, message: str | None) -> None:
    if message is None:  # a semicolon-separated sheet, as spreadsheets in many locales save CSV
        assert read_document(content, "q.csv").request.questions[0].choices == ["a", "b"]
        return
    with pytest.raises(DocumentError) as refused:
        read_document(content, "q.json" if content.startswith(b"{") else "q.csv")
    assert str(refused.value).startswith(message)


def test_an_xlsx_sheet_reads_numbers_and_booleans_as_a_spreadsheet_holds_them() -> None:
    content = _xlsx(
        [
            ["kind", "text", "correct", "min", "max", "tolerance", "seconds"],
            ["estimate", "Year?", 1969.5, 1900, 2000, 0.25, 30],
            ["true_false", "Yes?", False, None, None, None, None],
        ]
    )
    estimate, truth = read_document(content, "q.xlsx").request.questions
    assert (estimate.estimate.answer, estimate.estimate.min, estimate.estimate.tolerance) == ("1969.5", "1900", "0.25")
    assert estimate.time_limit_seconds == 30 and list(truth.correct_choices) == [1]


def test_a_file_that_is_not_a_workbook_is_refused() -> None:
    with pytest.raises(DocumentError, match="not an XLSX workbook"):
        read_document(b"PK\x03\x04 not really", "q.xlsx")


def test_the_services_refusal_of_a_question_names_its_row() -> None:
    document = read_document(b"text,choices,correct\nA?,a|b,1\nB?,a,1\n", "q.csv")
    assert document.locate(1, "question 2: needs 2 to 6 choices, has 1") == "row 3: needs 2 to 6 choices, has 1"
    assert document.locate(5, "question 6: x") == "question 6: x"
    assert isinstance(document.request.questions[1], pb.Question)
