"""The infrastructure handles that a process's composition roots share.

In the embedded mode all four components live in one process and must share one in-memory bus and
one set of channels; in production each service builds its own Kafka and Redis clients. Choosing
between them is `Engines`, i.e. configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.asyncio import BlockingConnectionPool, Redis

from quizmesh.eventbus.memory import InMemoryBus, InMemoryConsumer, InMemoryPublisher, InMemoryTailReader
from quizmesh.eventbus.ports import EventConsumer, EventPublisher, TailReader
from quizmesh.pubsub import Channels, InMemoryChannels, RedisChannels
from quizmesh.settings import Engines
from quizmesh.telemetry import Telemetry

# One event loop gains nothing from more connections than it has calls worth pipelining in parallel.
REDIS_MAX_CONNECTIONS = 64
REDIS_POOL_WAIT_S = 5.0


@dataclass
class Runtime:
    engines: Engines
    memory_bus: InMemoryBus = field(default_factory=InMemoryBus)
    memory_channels: InMemoryChannels = field(default_factory=InMemoryChannels)
    telemetry: Telemetry = field(default_factory=Telemetry.disabled)

    def publisher(self, client_id: str) -> EventPublisher:
        if self.engines.event_bus == "memory":
            return self.telemetry.traced_publisher(InMemoryPublisher(self.memory_bus))
        from quizmesh.eventbus.kafka import KafkaPublisher

        return self.telemetry.traced_publisher(KafkaPublisher(self.engines.kafka_bootstrap, client_id=client_id))

    def consumer(self, group: str, topics: Sequence[str], client_id: str, *, batch_wait_ms: int = 0) -> EventConsumer:
        if self.engines.event_bus == "memory":
            in_memory = InMemoryConsumer(self.memory_bus, group, topics)
            self.telemetry.watch_consumer_lag(group, in_memory.lag)
            return in_memory
        from quizmesh.eventbus.kafka import KafkaConsumer

        kafka = KafkaConsumer(
            self.engines.kafka_bootstrap, group, topics, client_id=client_id, batch_wait_ms=batch_wait_ms
        )
        self.telemetry.watch_consumer_lag(group, kafka.lag)
        return kafka

    def tail_reader(self, topics: Sequence[str], client_id: str) -> TailReader:
        if self.engines.event_bus == "memory":
            return InMemoryTailReader(self.memory_bus, topics)
        from quizmesh.eventbus.kafka import KafkaTailReader

        return KafkaTailReader(self.engines.kafka_bootstrap, topics, client_id=client_id)

    def redis(self, *, max_connections: int = REDIS_MAX_CONNECTIONS, wait_s: float = REDIS_POOL_WAIT_S) -> Redis:
        """A new client for the configured Redis; the caller closes it (`aclose`, which also closes the pool).

        redis-py's default pool raises MaxConnectionsError once 100 calls are in flight, which reached
        players as `internal`; a blocking pool makes a call beyond `max_connections` wait up to `wait_s`
        for a free connection instead (Redis answers in well under a millisecond, so the wait is short)."""
        pool = BlockingConnectionPool.from_url(
            self.engines.redis_url,
            max_connections=max_connections,
            timeout=wait_s,
            socket_timeout=5.0,
            socket_connect_timeout=5.0,
        )
        return Redis.from_pool(pool)

    def channels(self, redis: Redis | None) -> Channels:
        if self.engines.state == "memory" or redis is None:
            return self.memory_channels
        return RedisChannels(redis)
