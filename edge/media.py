"""Pictures and audio clips of questions, served to players: `GET /media/{media_id}`.

A media ID is the SHA-256 of the file's bytes, so a file never changes under its ID: browsers may keep
it for a year (`immutable`), its ETag is its ID (a revalidation is answered 304 without reading it), and
this edge keeps the files it serves in an in-process LRU. Concurrent requests for a file not cached yet
share one read from quiz_svc, so ten thousand players opening the same question cause one upstream read
per edge, and never one database read each. Media travel on these HTTP requests only, never with the
leaderboard or quiz state pushes, which name them by ID.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

CACHE_CONTROL: Final = "public, max-age=31536000, immutable"
# A media file is shown by the pages, never run: no sniffing another type into it, no script in it.
_FILE_HEADERS: Final = {
    "Cache-Control": CACHE_CONTROL,
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}
ROUTE: Final = "/media/{media_id:[0-9a-f]{64}}"


@dataclass(frozen=True)
class MediaFile:
    media_id: str
    content_type: str
    content: bytes


Fetch = Callable[[str], Awaitable[MediaFile | None]]


class MediaCache:
    """The media files this edge served last, up to max_bytes in all, and one upstream read per file
    however many ask for it at once."""

    def __init__(self, fetch: Fetch, max_bytes: int) -> None:
        self._fetch = fetch
        self._max_bytes = max_bytes
        self._bytes = 0
        self._files: OrderedDict[str, MediaFile] = OrderedDict()
        self._reading: dict[str, asyncio.Task[MediaFile | None]] = {}

    async def get(self, media_id: str) -> MediaFile | None:
        """The file, or None when quiz_svc stores none under that ID."""
        cached = self._files.get(media_id)
        if cached is not None:
            self._files.move_to_end(media_id)
            return cached
        reading = self._reading.get(media_id)
        if reading is None:
            reading = asyncio.create_task(self._read(media_id), name=f"media-read-{media_id[:12]}")
            self._reading[media_id] = reading
        # Shielded: a player who goes away does not cancel the read the others wait for.
        return await asyncio.shield(reading)

    async def _read(self, media_id: str) -> MediaFile | None:
        try:
            found = await self._fetch(media_id)
        finally:
            self._reading.pop(media_id, None)
        if found is not None and len(found.content) <= self._max_bytes:
            self._files[media_id] = found
            self._bytes += len(found.content)
            while self._bytes > self._max_bytes:
                _, evicted = self._files.popitem(last=False)
                self._bytes -= len(evicted.content)
        return found


def handler(cache: MediaCache) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def media(request: web.Request) -> web.StreamResponse:
        media_id = request.match_info["media_id"]
        etag = f'"{media_id}"'
        if etag in (tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")):
            return web.Response(status=304, headers={**_FILE_HEADERS, "ETag": etag})
        found = await cache.get(media_id)
        if found is None:
            raise web.HTTPNotFound(text="no picture or clip has this ID")
        return web.Response(
            body=found.content, content_type=found.content_type, headers={**_FILE_HEADERS, "ETag": etag}
        )

    return media
