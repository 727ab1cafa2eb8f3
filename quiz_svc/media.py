"""Pictures and audio clips on questions: which files are accepted and how they are named. Part of
quiz_svc's domain: pure, no I/O.

A file is named by the SHA-256 of its bytes (its media ID), so the same picture uploaded twice is
stored once and a cached copy can never be stale. Its type is read from its first bytes (the
formats' magic numbers), never from a file name or a client's claim; formats that can carry script
(SVG, HTML) are not among them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

MAX_IMAGE_BYTES = 1024 * 1024
MAX_AUDIO_BYTES = 4 * 1024 * 1024
# The whole of a quiz's uploads travels in one gRPC call, whose limit is 16 MiB.
MAX_QUIZ_MEDIA_BYTES = 12 * 1024 * 1024
MAX_UPLOAD_NAME = 200
MEDIA_ID_LENGTH = 64
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
AUDIO_TYPES = frozenset({"audio/mpeg", "audio/ogg", "audio/wav", "audio/mp4"})


class InvalidMedia(ValueError):
    """An upload quiz_svc refuses; the message says which and why."""


@dataclass(frozen=True)
class MediaFile:
    media_id: str
    content_type: str
    content: bytes

    @property
    def is_image(self) -> bool:
        return self.content_type in IMAGE_TYPES


def sniff(content: bytes) -> str | None:
    """The type of a file from its first bytes, or None when it is none of the accepted ones."""
    head = content[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    # MP3: an ID3v2 tag, or an MPEG audio frame header (11 set sync bits, layer III).
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE6 == 0xE2):
        return "audio/mpeg"
    if head[4:8] == b"ftyp" and head[8:11] in (b"M4A", b"mp4", b"iso", b"M4B"):
        return "audio/mp4"
    return None


def media_id(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def is_media_id(text: str) -> bool:
    return len(text) == MEDIA_ID_LENGTH and all(c in "0123456789abcdef" for c in text)


def media_file(name: str, content: bytes) -> MediaFile:
    """An upload as quiz_svc stores it, or InvalidMedia naming it."""
    where = f"upload {name[:MAX_UPLOAD_NAME]!r}"
    content_type = sniff(content)
    if content_type is None:
        raise InvalidMedia(f"{where} is not a PNG, JPEG, GIF or WebP picture, nor an MP3, Ogg, WAV or M4A clip")
    limit = MAX_IMAGE_BYTES if content_type in IMAGE_TYPES else MAX_AUDIO_BYTES
    if len(content) > limit:
        raise InvalidMedia(f"{where} has {len(content)} bytes; a {content_type} file may have at most {limit}")
    return MediaFile(media_id(content), content_type, content)


def uploads(named: Mapping[str, bytes]) -> dict[str, MediaFile]:
    """Every upload of a quiz by its name, checked one by one and together."""
    if sum(len(c) for c in named.values()) > MAX_QUIZ_MEDIA_BYTES:
        raise InvalidMedia(f"a quiz's uploads may have at most {MAX_QUIZ_MEDIA_BYTES} bytes together")
    for name in named:
        if not name or len(name) > MAX_UPLOAD_NAME:
            raise InvalidMedia(f"an upload needs a name of 1 to {MAX_UPLOAD_NAME} characters")
    return {name: media_file(name, content) for name, content in named.items()}


@dataclass(frozen=True)
class QuestionMedia:
    """What a question shows besides text: media IDs (while a quiz is being created, upload names too)."""

    image: str = ""
    audio: str = ""
    choice_images: tuple[str, ...] = ()

    def references(self) -> list[str]:
        return [r for r in (self.image, self.audio, *self.choice_images) if r]

    def resolved(self, named: Mapping[str, MediaFile]) -> QuestionMedia:
        """The same media named by media ID, an upload name replaced by its upload's ID."""

        def resolve(ref: str) -> str:
            return named[ref].media_id if ref in named else ref

        return QuestionMedia(resolve(self.image), resolve(self.audio), tuple(resolve(r) for r in self.choice_images))


NO_MEDIA = QuestionMedia()
