"""The infrastructure handles that a process's composition roots share.

In the embedded mode all four components live in one process and must share one in-memory bus and
one set of channels; in production each service builds its own Kafka and Redis clients. Choosing
between them is `Engines`, i.e. configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from quizmesh.eventbus.memory import (
    InMemoryBus,
    InMemoryConsumer,
    InMemoryGroupProgress,
    InMemoryPublisher,
    InMemoryTailReader,
)
from quizmesh.eventbus.ports import EventConsumer, EventPublisher, GroupProgress, TailReader
from quizmesh.grpc_server import GrpcServer, ServiceBinding
from quizmesh.pubsub import Channels, InMemoryChannels, RedisChannels
from quizmesh.redis_client import (
    REDIS_MAX_CONNECTIONS,
    REDIS_POOL_WAIT_S,
    RedisClient,
    ReplicaAcks,
    check_credentials,
    connect,
    connect_single,
)
from quizmesh.settings import Engines, SettingsError
from quizmesh.telemetry import Telemetry


@dataclass
class Runtime:
    engines: Engines
    memory_bus: InMemoryBus = field(default_factory=InMemoryBus)
    memory_channels: InMemoryChannels = field(default_factory=InMemoryChannels)
    telemetry: Telemetry = field(default_factory=Telemetry.disabled)

    def grpc_server(self, address: str, binding: ServiceBinding) -> GrpcServer:
        """A service's gRPC server, traced and measured by this process's telemetry."""
        untraced = [binding.full_method(method) for method in binding.traced_by_servicer]
        return GrpcServer(address, [binding], interceptors=self.telemetry.grpc_server_interceptors(untraced))

    def publisher(self, client_id: str) -> EventPublisher:
        if self.engines.event_bus == "memory":
            return self.telemetry.traced_publisher(InMemoryPublisher(self.memory_bus))
        from quizmesh.eventbus.kafka import KafkaPublisher

        return self.telemetry.traced_publisher(
            KafkaPublisher(
                self.engines.kafka_bootstrap, client_id=client_id, credentials=self.engines.kafka_credentials
            )
        )

    def consumer(self, group: str, topics: Sequence[str], client_id: str, *, batch_wait_ms: int = 0) -> EventConsumer:
        if self.engines.event_bus == "memory":
            in_memory = InMemoryConsumer(self.memory_bus, group, topics)
            self.telemetry.watch_consumer_lag(group, in_memory.lag)
            return in_memory
        from quizmesh.eventbus.kafka import KafkaConsumer

        kafka = KafkaConsumer(
            self.engines.kafka_bootstrap,
            group,
            topics,
            client_id=client_id,
            batch_wait_ms=batch_wait_ms,
            credentials=self.engines.kafka_credentials,
        )
        self.telemetry.watch_consumer_lag(group, kafka.lag)
        return kafka

    def tail_reader(self, topics: Sequence[str], client_id: str) -> TailReader:
        if self.engines.event_bus == "memory":
            return InMemoryTailReader(self.memory_bus, topics)
        from quizmesh.eventbus.kafka import KafkaTailReader

        return KafkaTailReader(
            self.engines.kafka_bootstrap, topics, client_id=client_id, credentials=self.engines.kafka_credentials
        )

    def group_progress(self, client_id: str) -> GroupProgress:
        if self.engines.event_bus == "memory":
            return InMemoryGroupProgress(self.memory_bus)
        from quizmesh.eventbus.kafka import KafkaGroupProgress

        return KafkaGroupProgress(
            self.engines.kafka_bootstrap, client_id=client_id, credentials=self.engines.kafka_credentials
        )

    def redis(self, *, max_connections: int = REDIS_MAX_CONNECTIONS, wait_s: float = REDIS_POOL_WAIT_S) -> RedisClient:
        """A new client for the configured Redis (one node or a cluster, see quizmesh.redis_client.connect);
        the caller closes it (`aclose`)."""
        return connect(
            self.engines.redis_url,
            self.engines.redis_mode,
            max_connections=max_connections,
            wait_s=wait_s,
            credentials=self.engines.redis_credentials,
        )

    def replica_acks(self) -> ReplicaAcks:
        """How many replicas must hold the writes that a Redis failover must not forget (answers, rankings)."""
        return ReplicaAcks(self.engines.redis_wait_replicas, self.engines.redis_wait_timeout_ms)

    def channels(self, redis: RedisClient | None) -> Channels:
        """Pub/sub between processes: in memory when the state is; on its own Redis when one is configured
        (the channels then own that client); else on the state's Redis."""
        if self.engines.state == "memory" or redis is None:
            return self.memory_channels
        if self.engines.redis_pubsub_url:
            return RedisChannels(
                connect_single(self.engines.redis_pubsub_url, credentials=self.engines.redis_credentials),
                owns_client=True,
            )
        if not isinstance(redis, Redis):
            raise SettingsError(
                "QUIZMESH_REDIS_PUBSUB_URL must name a Redis for pub/sub in QUIZMESH_REDIS_MODE=cluster"
            )
        return RedisChannels(redis)

    async def check_credentials(self, redis: RedisClient | None = None) -> None:
        """Refuses to start (CannotStart, saying which setting to fix) when Kafka, or the given Redis,
        refuses this process's user or presents a certificate its CAs do not vouch for. Servers that are
        merely unreachable are not this check's business."""
        if self.engines.event_bus == "kafka":
            from quizmesh.eventbus.kafka import check_credentials as check_kafka

            await check_kafka(self.engines.kafka_bootstrap, self.engines.kafka_credentials)
        if redis is not None:
            await check_credentials(redis, self.engines.redis_credentials)
