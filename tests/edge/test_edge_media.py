"""Question media through the edge: long-lived cache headers and an ETag, 304 on revalidation, and one
upstream read however many players fetch the same file at once."""

from __future__ import annotations

import asyncio
import hashlib
import json

import aiohttp
import pytest

from edge.media import CACHE_CONTROL, MediaCache, MediaFile
from tests.edge.conftest import EdgeFactory
from tests.edge.edge_fakes import FakeServices

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
PNG_ID = hashlib.sha256(PNG).hexdigest()


class CountingFetch:
    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self, media_id: str) -> MediaFile | None:
        self.calls += 1
        await self.release.wait()
        return MediaFile(media_id, "image/png", media_id.encode() * 10) if media_id != "gone" else None


async def test_ten_thousand_concurrent_gets_of_one_file_make_one_upstream_read() -> None:
    fetch = CountingFetch()
    cache = MediaCache(fetch, max_bytes=1 << 20)
    waiting = [asyncio.create_task(cache.get("a" * 64)) for _ in range(10_000)]
    await asyncio.sleep(0)
    fetch.release.set()
    files = await asyncio.gather(*waiting)
    assert fetch.calls == 1
    assert {f.content for f in files if f is not None} == {b"a" * 640}
    assert await cache.get("a" * 64) is files[0] and fetch.calls == 1  # served from memory afterwards


async def test_a_player_who_goes_away_does_not_cancel_the_read_the_others_wait_for() -> None:
    fetch = CountingFetch()
    cache = MediaCache(fetch, max_bytes=1 << 20)
    leaving, staying = asyncio.create_task(cache.get("b" * 64)), asyncio.create_task(cache.get("b" * 64))
    await asyncio.sleep(0)
    leaving.cancel()
    fetch.release.set()
    assert (await staying) is not None and fetch.calls == 1


async def test_the_cache_keeps_the_most_recent_files_within_its_bytes_and_forgets_missing_ones() -> None:
    fetch = CountingFetch()
    fetch.release.set()
    cache = MediaCache(fetch, max_bytes=1_300)  # two files of 640 bytes fit, not three
    for name in ("a", "b", "a", "c"):
        await cache.get(name * 64)
    assert fetch.calls == 3
    await cache.get("a" * 64)  # kept: used after b
    await cache.get("b" * 64)  # evicted
    assert fetch.calls == 4
    assert await cache.get("gone") is None and await cache.get("gone") is None
    assert fetch.calls == 6


async def _upload(client: aiohttp.ClientSession | object, base: str) -> str:
    form = aiohttp.FormData()
    quiz = {
        "title": "Pictures",
        "questions": [{"text": "Which?", "choices": ["a", "b"], "correct_choices": [0], "image": "tower.png"}],
    }
    form.add_field("quiz", json.dumps(quiz), filename="quiz.json", content_type="application/json")
    form.add_field("media", PNG, filename="tower.png", content_type="application/octet-stream")
    assert isinstance(client, aiohttp.ClientSession)
    async with client.post(f"{base}/quizzes", data=form) as response:
        assert response.status == 200, await response.text()
        created = await response.json()
    image: str = created["quiz"]["questions"][0]["image"]
    return image


async def test_media_are_served_immutable_with_an_etag_and_revalidated_without_an_upstream_read(
    services: FakeServices, edge: EdgeFactory
) -> None:
    client = await edge()
    base = str(client.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        media_id = await _upload(session, base)
        assert media_id == PNG_ID
        async with session.get(f"{base}/media/{media_id}") as response:
            assert response.status == 200
            assert await response.read() == PNG
            assert response.headers["Content-Type"] == "image/png"
            assert response.headers["Cache-Control"] == CACHE_CONTROL == "public, max-age=31536000, immutable"
            assert response.headers["ETag"] == f'"{media_id}"'
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        async with session.get(f"{base}/media/{media_id}", headers={"If-None-Match": f'"{media_id}"'}) as again:
            assert (again.status, await again.read()) == (304, b"")
            assert again.headers["ETag"] == f'"{media_id}"'
        assert services.quiz.media_reads[media_id] == 1
        async with session.get(f"{base}/media/{'0' * 64}") as missing:
            assert missing.status == 404
        async with session.get(f"{base}/media/not-a-media-id") as malformed:
            assert malformed.status == 404
        assert services.quiz.media_reads["0" * 64] == 1 and "not-a-media-id" not in services.quiz.media_reads


@pytest.mark.parametrize("players", [200])
async def test_concurrent_players_fetching_one_picture_cause_one_upstream_read(
    services: FakeServices, edge: EdgeFactory, players: int
) -> None:
    client = await edge()
    base = str(client.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        media_id = await _upload(session, base)
        services.quiz.media_gate.clear()
        services.quiz.media_read.clear()

        async def fetch() -> bytes:
            async with session.get(f"{base}/media/{media_id}") as response:
                assert response.status == 200
                return await response.read()

        fetching = [asyncio.create_task(fetch()) for _ in range(players)]
        await services.quiz.media_read.wait()
        services.quiz.media_gate.set()
        assert set(await asyncio.gather(*fetching)) == {PNG}
    assert services.quiz.media_reads[media_id] == 1


async def test_the_pages_policy_allows_same_origin_pictures_and_clips_only(edge: EdgeFactory) -> None:
    client = await edge()
    async with client.get("/") as page:
        policy = page.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"  # media-src falls back to it: this origin's /media/ only
    assert directives["img-src"] == "'self' data:"
    assert "media-src" not in directives
