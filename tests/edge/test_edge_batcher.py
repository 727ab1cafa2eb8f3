"""The answer micro-batcher, driven by a fake send function."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from edge.upstream import AnswerBatcher
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2


class RecordingSend:
    def __init__(self, *, delay_s: float = 0.0, fail: Exception | None = None, short: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.delay_s = delay_s
        self.fail = fail
        self.short = short
        self.concurrent = 0
        self.max_concurrent = 0

    async def __call__(self, answers: list[quiz_pb2.Answer]) -> Sequence[quiz_pb2.AnswerOutcome]:
        self.batches.append([a.player_token for a in answers])
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.concurrent -= 1
        if self.fail is not None:
            raise self.fail
        outcomes = [
            quiz_pb2.AnswerOutcome(result=quiz_pb2.AnswerResult(points=a.choice, event_id=a.player_token))
            for a in answers
        ]
        return outcomes[:-1] if self.short else outcomes


def answer(token: str, choice: int = 0) -> quiz_pb2.Answer:
    return quiz_pb2.Answer(player_token=token, question_index=0, choice=choice)


async def test_concurrent_answers_share_one_call_and_each_gets_its_own_outcome() -> None:
    send = RecordingSend()
    batcher = AnswerBatcher(send, max_batch=256, linger_s=0.005, max_in_flight=8)
    outcomes = await asyncio.gather(*(batcher.submit(answer(f"t{i}", i)) for i in range(10)))
    assert len(send.batches) == 1
    assert [o.result.event_id for o in outcomes] == [f"t{i}" for i in range(10)]
    assert [o.result.points for o in outcomes] == list(range(10))


async def test_a_full_batch_is_sent_without_waiting_for_the_linger() -> None:
    send = RecordingSend()
    batcher = AnswerBatcher(send, max_batch=4, linger_s=60.0, max_in_flight=8)
    outcomes = await asyncio.wait_for(asyncio.gather(*(batcher.submit(answer(f"t{i}")) for i in range(8))), 1.0)
    assert [len(b) for b in send.batches] == [4, 4]
    assert len(outcomes) == 8


async def test_several_batches_may_be_in_flight() -> None:
    send = RecordingSend(delay_s=0.05)
    batcher = AnswerBatcher(send, max_batch=2, linger_s=60.0, max_in_flight=8)
    await asyncio.wait_for(asyncio.gather(*(batcher.submit(answer(f"t{i}")) for i in range(6))), 1.0)
    assert send.max_concurrent == 3


async def test_answers_beyond_the_calls_in_flight_wait_for_one_to_return_and_then_go_together() -> None:
    send = RecordingSend(delay_s=0.05)
    batcher = AnswerBatcher(send, max_batch=256, linger_s=0.001, max_in_flight=1)
    first = asyncio.create_task(batcher.submit(answer("first")))
    await asyncio.sleep(0.01)  # its call is in flight now
    later = [asyncio.create_task(batcher.submit(answer(f"later{i}"))) for i in range(5)]
    await asyncio.sleep(0.01)  # far past the linger: they wait for the call, not for the linger
    assert send.batches == [["first"]]
    outcomes = await asyncio.wait_for(asyncio.gather(first, *later), 1.0)
    assert send.batches == [["first"], [f"later{i}" for i in range(5)]]
    assert send.max_concurrent == 1
    assert [o.result.event_id for o in outcomes] == ["first", *(f"later{i}" for i in range(5))]


async def test_a_full_batch_goes_even_when_the_calls_in_flight_are_at_their_limit() -> None:
    send = RecordingSend(delay_s=0.05)
    batcher = AnswerBatcher(send, max_batch=2, linger_s=60.0, max_in_flight=1)
    await asyncio.wait_for(asyncio.gather(*(batcher.submit(answer(f"t{i}")) for i in range(4))), 1.0)
    assert send.batches == [["t0", "t1"], ["t2", "t3"]]
    assert send.max_concurrent == 2


async def test_a_failed_call_fails_every_answer_in_it() -> None:
    batcher = AnswerBatcher(RecordingSend(fail=ConnectionError("down")), max_batch=8, linger_s=0.001, max_in_flight=8)
    results = await asyncio.gather(*(batcher.submit(answer(f"t{i}")) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_a_short_response_is_an_error_not_a_misattributed_outcome() -> None:
    batcher = AnswerBatcher(RecordingSend(short=True), max_batch=8, linger_s=0.001, max_in_flight=8)
    with pytest.raises(RuntimeError, match="outcomes"):
        await asyncio.gather(batcher.submit(answer("a")), batcher.submit(answer("b")))


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    send = RecordingSend(delay_s=0.02)
    batcher = AnswerBatcher(send, max_batch=8, linger_s=0.001, max_in_flight=8)
    leaving = asyncio.create_task(batcher.submit(answer("gone")))
    staying = asyncio.create_task(batcher.submit(answer("here")))
    await asyncio.sleep(0.01)
    leaving.cancel()
    assert (await staying).result.event_id == "here"
    await batcher.close()
