"""How a replica's lag is measured from probes of the primary's and the replica's WAL positions."""

from __future__ import annotations

import math

from persistence_svc.adapters.replica import ReplicaLag


def test_a_replica_never_seen_caught_up_counts_as_infinitely_behind() -> None:
    lag = ReplicaLag()
    lag.primary_at(10.0, 500)
    lag.replica_replayed(400)
    assert lag.lag_ms(10.1) == math.inf


def test_the_lag_is_the_time_since_the_latest_probe_the_replica_has_replayed_past() -> None:
    lag = ReplicaLag()
    lag.primary_at(10.0, 100)
    lag.primary_at(10.25, 200)
    lag.primary_at(10.5, 300)
    lag.replica_replayed(250)  # holds everything of the probe at 10.25, not yet of the one at 10.5
    assert lag.lag_ms(10.625) == 375.0


def test_a_replica_that_stops_replaying_falls_further_behind_with_the_clock() -> None:
    lag = ReplicaLag()
    lag.primary_at(10.0, 100)
    lag.replica_replayed(100)
    for second in range(1, 6):
        lag.primary_at(10.0 + second, 100 + second)
        lag.replica_replayed(100)
    assert lag.lag_ms(15.0) == 5000.0


def test_an_idle_primary_keeps_a_replayed_replica_current() -> None:
    lag = ReplicaLag()
    for probe in range(4):
        lag.primary_at(probe * 0.25, 700)
        lag.replica_replayed(700)
    assert lag.lag_ms(0.8125) == 62.5
