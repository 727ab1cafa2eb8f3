"""How events move a standing is the domain's rule (leaderboard_svc.domain.after_join, after_answer and
after_erase);
the Redis engine restates it in apply_events.lua, where it must be atomic per batch, and takes its
parameter (REACHED_SLOTS) from the domain. One table of event sequences runs through the domain
functions and through both engines, so the script cannot drift from the rule."""

from __future__ import annotations

import dataclasses

import pytest

from leaderboard_svc.domain import (
    AnswerScored,
    PlayerErased,
    PlayerJoined,
    PlayerLeft,
    RankingEvent,
    Standing,
    after_answer,
    after_erase,
    after_join,
    rank,
)
from leaderboard_svc.ports import LeaderboardStore

T0 = 1_700_000_000_000


def J(player: str, at: int) -> PlayerJoined:
    return PlayerJoined("", player, player.upper(), at)


def A(player: str, question: int, total: int, at: int) -> AnswerScored:
    return AnswerScored("", player, question, total, at, T0 + at)


def L(player: str) -> PlayerLeft:
    return PlayerLeft("", player)


def E(player: str) -> PlayerErased:
    return PlayerErased("", player, "Deleted player")


TABLE: dict[str, list[RankingEvent]] = {
    "joins rank in join order at zero": [J("b", 20), J("a", 10), J("c", 30)],
    "a tie at the same millisecond goes to the higher player ID": [J("a", 10), J("b", 10)],
    "a score ranks above zero": [J("a", 10), J("b", 20), A("b", 0, 500, 900)],
    "equal scores rank by who reached them first": [J("a", 1), J("b", 2), A("b", 0, 800, 3_000), A("a", 0, 800, 2_000)],
    "a zero-point answer keeps the moment the score was reached": [
        J("a", 1),
        J("b", 2),
        A("a", 0, 800, 3_000),
        A("b", 0, 800, 3_500),
        A("a", 1, 800, 9_000),
    ],
    "a redelivered older answer changes nothing": [
        J("a", 1),
        A("a", 0, 500, 10),
        A("a", 1, 900, 20),
        A("a", 0, 500, 10),
    ],
    "an answer before its join keeps the answer's score, named and dated by the join at zero": [
        A("b", 0, 0, 8_000),
        J("a", 300),
        J("b", 200),
    ],
    "an answer before its join with points keeps the answer's moment": [A("b", 0, 700, 8_000), J("b", 200), J("a", 5)],
    "a player who left is gone for good": [
        J("a", 1),
        J("b", 2),
        A("a", 0, 500, 9),
        L("a"),
        J("a", 3),
        A("a", 1, 900, 20),
    ],
    "a leave before the join keeps the player out": [L("c"), J("c", 4), J("d", 5)],
    "an erased player keeps rank and score under the replacement; a replayed join keeps it": [
        J("a", 1),
        J("b", 2),
        A("a", 0, 500, 9),
        E("a"),
        J("a", 1),
        A("a", 1, 900, 20),
    ],
    "an erasure before the join holds the player at zero, named for good and dated by the join": [
        J("b", 20),
        E("a"),
        J("c", 30),
        J("a", 10),
    ],
    "an erasure in a ranking not held recreates nothing": [E("a")],
    "an erased player who left stays gone": [J("a", 1), J("b", 2), L("a"), E("a"), J("a", 1)],
    "erasing twice is erasing once": [J("a", 1), A("a", 0, 300, 5), E("a"), E("a")],
}


def by_the_domain(events: list[RankingEvent]) -> list[tuple[str, str, int]]:
    standings: dict[str, Standing] = {}
    left: set[str] = set()
    for event in events:
        current = standings.get(event.player_id)
        if isinstance(event, PlayerLeft):
            left.add(event.player_id)
            standings.pop(event.player_id, None)
            continue
        has_left = event.player_id in left
        if isinstance(event, PlayerJoined):
            updated = after_join(current, event, has_left)
        elif isinstance(event, PlayerErased):
            updated = after_erase(current, event, has_left, bool(standings))
        else:
            updated = after_answer(current, event, has_left)
        if updated is not None:
            standings[event.player_id] = updated
    return [(s.player_id, s.nickname, s.score) for s in rank(standings.values())]


@pytest.mark.parametrize("case", list(TABLE))
async def test_each_engine_ranks_as_the_domains_rules_do(store: LeaderboardStore, quiz_id: str, case: str) -> None:
    events = [dataclasses.replace(e, quiz_id=quiz_id) for e in TABLE[case]]
    # One event per batch, then all at once: the script must follow the rules in both.
    for event in events:
        await store.apply([event])
    assert [(e.player_id, e.nickname, e.score) for e in (await store.ranking(quiz_id)).entries] == by_the_domain(events)
    again = f"{quiz_id}-batch"
    await store.apply([dataclasses.replace(e, quiz_id=again) for e in events])
    assert [(e.player_id, e.nickname, e.score) for e in (await store.ranking(again)).entries] == by_the_domain(events)
