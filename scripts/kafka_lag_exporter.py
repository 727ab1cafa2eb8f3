"""Consumer-group lag of the local Kafka, for the local Prometheus (scripts/prometheus.sh).

In Kubernetes, Strimzi's Kafka Exporter measures this (deploy/kafka/kafka.yaml, `kafkaExporter`); it
is not on a package registry this project can reach, so the local stack runs this instead. It serves
the Kafka Exporter's names and labels for what the alert rules read, with the same meaning:

  kafka_consumergroup_current_offset{consumergroup, topic, partition}  the group's committed offset
  kafka_consumergroup_lag{consumergroup, topic, partition}             the partition's end offset minus it
  kafka_topic_partition_current_offset{topic, partition}               the partition's end offset

It asks the brokers (committed offsets and end offsets), never the consumers, so a consumer that is
frozen or gone still shows its lag. While the brokers do not answer it serves none of these series.

  python scripts/kafka_lag_exporter.py --bootstrap HOST:PORT --port PORT --group NAME [--group ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("kafka_lag_exporter")


@dataclass(frozen=True)
class Offsets:
    committed: dict[tuple[str, TopicPartition], int]  # (group, partition) -> committed offset
    end: dict[TopicPartition, int]


class LagCollector(Collector):
    """Serves the offsets of the last successful poll (none after a failed one)."""

    def __init__(self) -> None:
        self.offsets = Offsets({}, {})

    def collect(self) -> Iterator[GaugeMetricFamily]:
        offsets = self.offsets
        labels = ["consumergroup", "topic", "partition"]
        current = GaugeMetricFamily("kafka_consumergroup_current_offset", "Committed offset of a group", labels=labels)
        lag = GaugeMetricFamily(
            "kafka_consumergroup_lag", "End offset minus the group's committed offset", labels=labels
        )
        end = GaugeMetricFamily(
            "kafka_topic_partition_current_offset", "End offset of a partition", labels=["topic", "partition"]
        )
        for (group, tp), committed in sorted(offsets.committed.items()):
            partition = [group, tp.topic, str(tp.partition)]
            current.add_metric(partition, committed)
            lag.add_metric(partition, max(0, offsets.end.get(tp, committed) - committed))
        for tp, offset in sorted(offsets.end.items()):
            end.add_metric([tp.topic, str(tp.partition)], offset)
        yield from (current, lag, end)


async def poll(bootstrap: str, groups: Sequence[str]) -> Offsets:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=5000)
    await admin.start()
    try:
        await consumer.start()
        try:
            committed = {}
            for group in groups:
                try:
                    offsets = await admin.list_consumer_group_offsets(group)
                except KafkaError as exc:  # a group that never committed has no coordinator yet
                    log.info("no offsets of group %s: %s", group, exc)
                    continue
                for tp, meta in offsets.items():
                    if meta.offset >= 0:
                        committed[(group, tp)] = meta.offset
            end = await consumer.end_offsets(sorted({tp for _, tp in committed}))
            return Offsets(committed, dict(end))
        finally:
            await consumer.stop()
    finally:
        await admin.close()


async def run(bootstrap: str, groups: Sequence[str], collector: LagCollector, interval_s: float) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    while not stop.is_set():
        try:
            collector.offsets = await asyncio.wait_for(poll(bootstrap, groups), timeout=15)
        except Exception as exc:  # the brokers are down or restarting: serve nothing until they answer
            log.warning("cannot read offsets from %s: %s", bootstrap, exc)
            collector.offsets = Offsets({}, {})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--group", action="append", required=True)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    registry = CollectorRegistry(auto_describe=False)
    collector = LagCollector()
    registry.register(collector)
    start_http_server(args.port, args.host, registry)
    log.info("serving consumer lag of %s on http://%s:%d/metrics", ", ".join(args.group), args.host, args.port)
    asyncio.run(run(args.bootstrap, args.group, collector, args.interval))


if __name__ == "__main__":
    main()
