"""The store's behaviour, held to the same cases on every engine (memory, and real Redis)."""

from __future__ import annotations

import uuid

from leaderboard_svc.domain import AnswerScored, PlayerJoined, PlayerLeft, RankedEntry, RankingEvent
from leaderboard_svc.ports import LeaderboardStore

T0 = 1_700_000_000_000


def join(quiz_id: str, player_id: str, at_ms: int = 0, nickname: str | None = None) -> PlayerJoined:
    return PlayerJoined(quiz_id, player_id, player_id.upper() if nickname is None else nickname, at_ms)


def answer(quiz_id: str, player_id: str, question: int, total: int, at_ms: int) -> AnswerScored:
    return AnswerScored(quiz_id, player_id, question, total, at_ms, T0 + at_ms)


def scores(entries: list[RankedEntry]) -> list[tuple[str, int, int]]:
    return [(e.player_id, e.score, e.rank) for e in entries]


def quiz_events(quiz_id: str) -> list[RankingEvent]:
    return [
        join(quiz_id, "ann", 10),
        join(quiz_id, "bob", 20),
        join(quiz_id, "cy", 30),
        answer(quiz_id, "ann", 0, 900, 5_000),
        answer(quiz_id, "bob", 0, 950, 4_000),
        answer(quiz_id, "cy", 0, 0, 6_000),
        answer(quiz_id, "ann", 1, 1_700, 12_000),
        answer(quiz_id, "bob", 1, 950, 13_000),
    ]


async def test_ranking_reflects_joins_and_answers(store: LeaderboardStore, quiz_id: str) -> None:
    assert await store.apply(quiz_events(quiz_id)) == {quiz_id}
    snapshot = await store.ranking(quiz_id)
    assert scores(snapshot.entries) == [("ann", 1_700, 1), ("bob", 950, 2), ("cy", 0, 3)]
    assert [e.nickname for e in snapshot.entries] == ["ANN", "BOB", "CY"]
    assert snapshot.last_answer_ms == T0 + 13_000
    assert snapshot.version == 0


async def test_replaying_the_same_batch_changes_nothing(store: LeaderboardStore, quiz_id: str) -> None:
    await store.apply(quiz_events(quiz_id))
    before = await store.ranking(quiz_id)
    assert await store.apply(quiz_events(quiz_id)) == set()
    assert await store.ranking(quiz_id) == before


async def test_older_answer_redelivered_late_is_ignored(store: LeaderboardStore, quiz_id: str) -> None:
    await store.apply(
        [join(quiz_id, "ann"), answer(quiz_id, "ann", 0, 500, 1_000), answer(quiz_id, "ann", 1, 1_200, 2_000)]
    )
    assert await store.apply([answer(quiz_id, "ann", 0, 500, 1_000)]) == set()
    assert scores((await store.ranking(quiz_id)).entries) == [("ann", 1_200, 1)]


async def test_tie_is_broken_by_who_reached_the_score_first(store: LeaderboardStore, quiz_id: str) -> None:
    await store.apply(
        [
            join(quiz_id, "ann", 10),
            join(quiz_id, "bob", 20),
            answer(quiz_id, "bob", 0, 800, 3_000),
            answer(quiz_id, "ann", 0, 800, 3_500),
            # Bob's zero-point answer keeps the moment he reached 800: he stays ahead.
            answer(quiz_id, "bob", 1, 800, 9_000),
        ]
    )
    assert scores((await store.ranking(quiz_id)).entries) == [("bob", 800, 1), ("ann", 800, 2)]


async def test_ties_at_zero_rank_in_join_order_to_the_millisecond(store: LeaderboardStore, quiz_id: str) -> None:
    # Issue 14: twelve players joining one after another, a few milliseconds apart, were ranked
    # [1, 5, 3, 4, 2, 8, 9, 6, 7, 12, 10, 11] in join order at score 0.
    players = [f"p{n:02}-{uuid.uuid4().hex[:6]}" for n in range(12)]
    await store.apply([join(quiz_id, p, 40_000 + 3 * n) for n, p in enumerate(players)])
    assert [e.player_id for e in (await store.ranking(quiz_id)).entries] == players


async def test_equal_scores_rank_by_the_millisecond_they_were_reached(store: LeaderboardStore, quiz_id: str) -> None:
    # Issue 14: a player who reached 1,984 at 312 ms was ranked below one who reached it at 316 ms.
    opened = 61_000
    await store.apply(
        [
            join(quiz_id, "amy", 10),
            join(quiz_id, "zed", 20),
            answer(quiz_id, "zed", 0, 1_984, opened + 316),
            answer(quiz_id, "amy", 0, 1_984, opened + 312),
        ]
    )
    assert scores((await store.ranking(quiz_id)).entries) == [("amy", 1_984, 1), ("zed", 1_984, 2)]
    assert (await store.top(quiz_id, 10, "zed")).player == RankedEntry("zed", "ZED", 1_984, 2)


async def test_players_tied_to_the_millisecond_rank_by_player_id_descending(
    store: LeaderboardStore, quiz_id: str
) -> None:
    await store.apply([join(quiz_id, p, 1_000) for p in ("b", "c", "a")])
    assert [e.player_id for e in (await store.ranking(quiz_id)).entries] == ["c", "b", "a"]


async def test_a_zero_point_answer_applied_before_the_join_ranks_by_the_join(
    store: LeaderboardStore, quiz_id: str
) -> None:
    await store.apply([join(quiz_id, "ann", 300), answer(quiz_id, "ann", 0, 0, 9_000)])
    # Bob joined before Ann, but his wrong answer reaches the leaderboard before his join (another topic).
    await store.apply([answer(quiz_id, "bob", 0, 0, 8_000)])
    assert await store.apply([join(quiz_id, "bob", 200)]) == {quiz_id}
    assert scores((await store.ranking(quiz_id)).entries) == [("bob", 0, 1), ("ann", 0, 2)]


async def test_leave_removes_the_player_for_good(store: LeaderboardStore, quiz_id: str) -> None:
    await store.apply([join(quiz_id, "ann"), join(quiz_id, "bob"), answer(quiz_id, "ann", 0, 500, 1_000)])
    assert await store.apply([PlayerLeft(quiz_id, "ann")]) == {quiz_id}
    await store.apply([join(quiz_id, "ann"), answer(quiz_id, "ann", 1, 900, 2_000)])
    snapshot = await store.ranking(quiz_id)
    assert scores(snapshot.entries) == [("bob", 0, 1)]


async def test_answer_before_join_is_ranked_and_named_by_the_join(store: LeaderboardStore, quiz_id: str) -> None:
    await store.apply([answer(quiz_id, "ann", 0, 500, 1_000)])
    assert [(e.player_id, e.nickname) for e in (await store.ranking(quiz_id)).entries] == [("ann", "")]
    assert await store.apply([join(quiz_id, "ann", 10, "Ann")]) == {quiz_id}
    assert [(e.player_id, e.nickname, e.score) for e in (await store.ranking(quiz_id)).entries] == [("ann", "Ann", 500)]


async def test_versions_increase_monotonically(store: LeaderboardStore, quiz_id: str) -> None:
    await store.apply([join(quiz_id, "ann")])
    versions = [(await store.next_ranking(quiz_id)).version for _ in range(5)]
    assert versions == [1, 2, 3, 4, 5]
    current = await store.ranking(quiz_id)
    assert current.version == 5
    assert scores(current.entries) == [("ann", 0, 1)]


async def test_batch_spanning_quizzes_reports_only_the_changed_ones(store: LeaderboardStore, quiz_id: str) -> None:
    other = f"{quiz_id}-other"
    await store.apply([join(other, "zed")])
    changed = await store.apply([join(quiz_id, "ann"), join(other, "zed")])
    assert changed == {quiz_id}
    assert scores((await store.ranking(other)).entries) == [("zed", 0, 1)]


async def test_top_returns_the_first_n_and_the_players_own_standing(store: LeaderboardStore, quiz_id: str) -> None:
    events: list[RankingEvent] = []
    for i in range(20):
        events += [join(quiz_id, f"p{i:02}", i), answer(quiz_id, f"p{i:02}", 0, i * 100, 1_000 + i)]
    await store.apply(events)
    await store.next_ranking(quiz_id)
    page = await store.top(quiz_id, 3, "p05")
    assert scores(page.top) == [("p19", 1_900, 1), ("p18", 1_800, 2), ("p17", 1_700, 3)]
    assert [e.nickname for e in page.top] == ["P19", "P18", "P17"]
    assert page.player == RankedEntry("p05", "P05", 500, 15)
    assert page.player_count == 20
    assert page.version == 1


async def test_top_of_an_unknown_quiz_or_player_is_empty(store: LeaderboardStore, quiz_id: str) -> None:
    page = await store.top(quiz_id, 10, "nobody")
    assert (page.top, page.player, page.player_count, page.version) == ([], None, 0, 0)
    await store.apply([join(quiz_id, "ann")])
    assert (await store.top(quiz_id, 10, "nobody")).player is None
    assert (await store.top(quiz_id, 10, "")).player is None


async def test_the_largest_possible_score_survives_the_composite(store: LeaderboardStore, quiz_id: str) -> None:
    most = 500 * (2_000 + 500)  # 500 questions, double points, the full streak bonus on each
    await store.apply(
        [
            join(quiz_id, "ann"),
            join(quiz_id, "bob"),
            answer(quiz_id, "bob", 499, most, 40_000_001),
            answer(quiz_id, "ann", 499, most, 40_000_000),
        ]
    )
    assert scores((await store.ranking(quiz_id)).entries) == [("ann", most, 1), ("bob", most, 2)]
