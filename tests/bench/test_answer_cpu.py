"""`python -m bench.answer_cpu memory` runs through: every batch after the warm-up is answered and timed."""

from __future__ import annotations

from bench.answer_cpu import BATCH, PLAYERS, QUESTIONS, measure


async def test_every_measured_batch_is_answered_and_timed() -> None:
    per_answer_s, batches = await measure("memory")
    # The first two questions warm up; each later one is answered in PLAYERS / BATCH batches, and measure
    # raises if any answer is refused.
    assert len(batches) == (QUESTIONS - 2) * (PLAYERS // BATCH)
    assert per_answer_s > 0 and all(wall_s > 0 for wall_s in batches)
