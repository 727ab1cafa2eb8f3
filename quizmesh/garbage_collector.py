"""The garbage collector's thresholds for quizmesh's long-running processes."""

from __future__ import annotations

import gc

from quizmesh.settings import Integer

# CPython's default of 700 makes a process holding 10,000 sockets collect its young objects constantly and
# promote what is merely in flight (an answer awaiting its gRPC call) to the old generations, which then
# fill up: in the 10,000-player benchmark the edge ran 21 full collections in 170 s, 8.4 s of CPU with
# pauses of up to 680 ms. At 50,000 most objects are freed by reference counting before a collection sees
# them, and the same run had no full collection (docs/performance.md, §3). The load generator's workers
# (5,000 sockets each) paused for up to 0.5 s with the default, inflating the latencies they measure.
GC_GEN0_THRESHOLD = 50_000


GC_GEN0 = Integer(
    "QUIZMESH_GC_GEN0_THRESHOLD",
    "The garbage collector's youngest-generation threshold (CPython's own default is 700; "
    "quizmesh/garbage_collector.py says why quizmesh raises it).",
    default=GC_GEN0_THRESHOLD,
    minimum=1,
)


def tune_garbage_collector(gen0_threshold: int = GC_GEN0_THRESHOLD) -> None:
    """Sets the youngest generation's threshold; the older ones keep theirs."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
