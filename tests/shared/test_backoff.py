"""The one backoff of every retry loop (quizmesh/backoff.py)."""

from __future__ import annotations

import asyncio

import pytest

from quizmesh.backoff import Backoff


def test_delays_double_up_to_the_cap_and_start_over_after_a_reset() -> None:
    backoff = Backoff(0.1, 0.5)
    assert [backoff.next_delay() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.reset()
    assert backoff.delay_s == 0.1


def test_jittered_delays_stay_in_the_upper_half_of_each_step() -> None:
    backoff = Backoff(1.0, 8.0, jitter=True)
    drawn = [backoff.next_delay() for _ in range(200)]
    steps = [min(2.0**n, 8.0) for n in range(200)]
    assert all(step / 2 <= delay <= step for delay, step in zip(drawn, steps, strict=True))
    assert len(set(drawn)) > 100  # drawn, not fixed


async def test_a_set_stop_ends_the_wait_and_says_so() -> None:
    stop = asyncio.Event()
    stop.set()
    # An hour's delay: the wait can only return because stop is set.
    assert await Backoff(3600.0, 3600.0).wait(stop) is True


async def test_a_wait_that_runs_its_course_says_it_was_not_stopped_and_doubles_the_next() -> None:
    backoff = Backoff(0.001, 1.0)
    assert await backoff.wait(asyncio.Event()) is False
    assert await backoff.wait() is False
    assert backoff.delay_s == 0.004


@pytest.mark.parametrize(("initial_s", "max_s"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_a_backoff_that_could_not_wait_is_refused(initial_s: float, max_s: float) -> None:
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(initial_s, max_s)
