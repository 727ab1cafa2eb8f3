"""`python -m bench floor` runs through on real loopback sockets and reports every row it promises."""

from __future__ import annotations

from bench.floor import run

ROWS = ("edge fan-out", "edge fan-out, one slice", "raw pre-built frame", "raw pre-built personal frames")


async def test_every_row_is_measured() -> None:
    # Enough sockets that a broadcast lasts longer than the 0.1 ms its time is rounded to.
    results = await run([300], broadcasts=2)
    (row,) = results["rows"]
    assert row["clients"] == 300 and row["broadcasts"] == 2 and row["frame_bytes"] > 100
    for name in ROWS:
        assert row[name]["cpu_us_per_message_median"] > 0, name
        assert row[name]["broadcast_ms_max"] >= row[name]["broadcast_ms_median"] > 0, name
    assert row["building_personal_frames_cpu_us_per_message_median"] > 0
    assert row["edge_over_raw_cpu"] > 0
