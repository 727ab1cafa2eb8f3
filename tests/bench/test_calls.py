"""`python -m bench calls` on a small scale: each way of making the answer call is measured end to end."""

from __future__ import annotations

from bench.calls import ANSWER_PATHS, VARIANTS, run


async def test_each_variant_is_measured_from_both_processes() -> None:
    measured = await run(calls=50)
    assert measured["calls"] == 50
    for name in [*VARIANTS, *ANSWER_PATHS]:
        figures = measured[name]
        # Every call took some of the client's CPU and some time on the wire; the server's CPU is read
        # in clock ticks (10 ms), which 50 calls may not fill, so it is only never negative.
        assert figures["client_cpu_us"] > 0 and figures["round_trip_us"] > 0
        assert figures["server_cpu_us"] >= 0
