"""Quizzes with files, for the host page: `POST /quizzes/import` reads a quiz document (JSON, CSV or
XLSX) and checks it against quiz_svc's rules without creating it; `POST /quizzes` creates a quiz with
the pictures and clips its questions name. Both take multipart/form-data: the document (`document`,
or `quiz`, create_quiz's JSON) and media files, each part's file name being the name questions use.
With `Authorization: Bearer <identity token>`, `POST /quizzes` creates the quiz for that signed-in user,
its owner (quiz_svc verifies the token; a refused one is a 401 and creates nothing).

A WebSocket frame is at most 64 KiB, too small for pictures, hence HTTP. Every refusal is a 400 whose
text names the row (or JSON path) at fault and why; nothing is created unless all of it is valid.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import unquote

import grpc
import orjson
from aiohttp import BodyPartReader, web

from edge import protocol
from edge.upstream import Upstream
from quizmesh.grpc_errors import QUESTION_INDEX_METADATA_KEY
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2
from quizmesh.quiz_document import MAX_DOCUMENT_BYTES, DocumentError, QuizDocument, question_to_json, read_document

# A quiz's uploads may have 12 MiB together (quiz_svc's limit); the document and the framing fit beside.
MAX_REQUEST_BYTES: Final = 13 * 1024 * 1024
MAX_PARTS: Final = 200
_JSON: Final = "application/json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _refused(text: str) -> web.HTTPException:
    return web.HTTPBadRequest(text=text)


async def _parts(request: web.Request) -> tuple[tuple[str, bytes] | None, dict[str, bytes]]:
    """The document part (its file name and bytes) and the media parts by file name, read within limits."""
    if not request.content_type.startswith("multipart/form-data"):
        raise _refused("send multipart/form-data: the quiz document and its media files")
    document: tuple[str, bytes] | None = None
    media: dict[str, bytes] = {}
    total = 0
    reader = await request.multipart()
    for _ in range(MAX_PARTS + 1):
        part = await reader.next()
        if part is None:
            return document, media
        if not isinstance(part, BodyPartReader):
            raise _refused("nested multipart bodies are not accepted")
        content = bytearray()
        while chunk := await part.read_chunk(256 * 1024):
            total += len(chunk)
            if total > MAX_REQUEST_BYTES:
                raise web.HTTPRequestEntityTooLarge(
                    max_size=MAX_REQUEST_BYTES,
                    actual_size=total,
                    text=f"the upload is larger than {MAX_REQUEST_BYTES} bytes",
                )
            content += chunk
        if part.name in ("document", "quiz"):
            if len(content) > MAX_DOCUMENT_BYTES:
                raise _refused(f"the quiz document is larger than {MAX_DOCUMENT_BYTES} bytes")
            document = (part.filename or ("quiz.json" if part.name == "quiz" else ""), bytes(content))
        elif part.name == "media" and part.filename:
            # Some clients percent-encode a file name's "/" (a name such as media/tower.png).
            media[unquote(part.filename)] = bytes(content)
    raise _refused(f"an upload has at most {MAX_PARTS} parts")


def _identity_token(request: web.Request) -> str:
    """The signed-in author's identity token (`Authorization: Bearer <token>`); empty when none is sent."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _read(document: tuple[str, bytes] | None) -> QuizDocument:
    if document is None:
        raise _refused("the upload has no quiz document (a part named 'document' or 'quiz')")
    try:
        return read_document(document[1], document[0])
    except DocumentError as exc:
        raise _refused(str(exc)) from None


async def _create(upstream: Upstream, document: QuizDocument) -> quiz_pb2.CreateQuizResponse:
    """CreateQuiz (or its check), a refusal of the rules becoming a 400 naming the row or path at fault."""
    try:
        return await upstream.create_quiz(document.request)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise web.HTTPUnauthorized(
                text=exc.details() or "the identity token was refused",
                headers={"WWW-Authenticate": 'Bearer realm="quizmesh"'},
            ) from None
        if exc.code() not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
            raise
        trailers = exc.trailing_metadata() or ()
        index = next((v for k, v in trailers if k == QUESTION_INDEX_METADATA_KEY and isinstance(v, str)), "")
        message = exc.details() or "the quiz was refused"
        raise _refused(document.locate(int(index), message) if index.isdigit() else message) from None


def _with_media(document: QuizDocument, media: dict[str, bytes]) -> QuizDocument:
    """The uploads the questions name. A browser sends a file under its own name, without the folders a
    document may name it in (media/tower.png arrives as tower.png), so a name also matches its last part."""
    named = {ref for q in document.request.questions for ref in (q.image, q.audio, *q.choice_images) if ref}
    for name in sorted(named):
        content = media.get(name, media.get(name.rsplit("/", 1)[-1]))
        if content is not None:
            document.request.media.append(quiz_pb2.MediaUpload(name=name, content=content))
    return document


def import_handler(upstream: Upstream) -> Handler:
    async def import_quiz(request: web.Request) -> web.StreamResponse:
        raw, media = await _parts(request)
        document = _with_media(_read(raw), media)
        document.request.validate_only = True
        if not document.request.title:
            document.request.title = "Imported quiz"  # the host types the title in the page
        await _create(upstream, document)
        fields: dict[str, Any] = {"questions": [question_to_json(q) for q in document.request.questions]}
        if raw is not None and document.request.title != "Imported quiz":
            fields["title"] = document.request.title
        return web.Response(body=orjson.dumps(fields), content_type=_JSON)

    return import_quiz


def create_handler(upstream: Upstream) -> Handler:
    async def create_quiz(request: web.Request) -> web.StreamResponse:
        raw, media = await _parts(request)
        document = _with_media(_read(raw), media)
        document.request.identity_token = _identity_token(request)
        created = await _create(upstream, document)
        body = {"type": "quiz_created", "quiz": protocol.quiz_json(created.quiz), "host_token": created.host_token}
        return web.Response(body=orjson.dumps(body), content_type=_JSON, headers={"Cache-Control": "no-store"})

    return create_quiz
