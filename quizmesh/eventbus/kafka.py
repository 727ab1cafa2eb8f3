"""The Kafka engine of the event bus (aiokafka).

aiokafka defaults to acks=1 without idempotence; both are set explicitly here, since a player is told
"accepted" only once every in-sync replica holds the event. Every client connects with the process's
KafkaCredentials (TLS, a SCRAM user): `connection_options`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition

from quizmesh.eventbus.ports import ConsumedRecord, EventBusUnavailable, Partition, Record
from quizmesh.process import CannotStart
from quizmesh.settings import (
    KAFKA_CA_FILE,
    KAFKA_PASSWORD,
    KAFKA_USERNAME,
    KAFKA_WITHOUT_CREDENTIALS,
    KafkaCredentials,
)

log = logging.getLogger(__name__)


def connection_options(bootstrap: str, credentials: KafkaCredentials) -> dict[str, Any]:
    """The options of every aiokafka client (producer, consumer, connection) that say where Kafka is and
    how to authenticate to it."""
    options: dict[str, Any] = {"bootstrap_servers": bootstrap, "security_protocol": credentials.security_protocol}
    if credentials.uses_tls:
        # Checks the brokers' certificates and host names against these CAs (or the system's).
        options["ssl_context"] = create_ssl_context(cafile=credentials.ca_file or None)
    if credentials.uses_sasl:
        options.update(
            sasl_mechanism=credentials.sasl_mechanism,
            sasl_plain_username=credentials.username,
            sasl_plain_password=credentials.password,
        )
    return options


_CHECK_TIMEOUT_S = 10.0


async def check_credentials(bootstrap: str, credentials: KafkaCredentials) -> None:
    """Raises CannotStart when a broker refuses the user or presents a certificate the CAs do not vouch
    for: no retry mends that. A broker that cannot be reached is left to the clients, which wait for it.

    aiokafka's clients log such a refusal and then fail with "Unable to bootstrap", the cause unsaid; so
    this opens one connection to the first broker that answers, which says why."""
    options = connection_options(bootstrap, credentials)
    servers = options.pop("bootstrap_servers")
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(host, int(port), request_timeout_ms=int(_CHECK_TIMEOUT_S * 1000), **options),
                _CHECK_TIMEOUT_S,
            )
        except (SaslAuthenticationFailed, UnsupportedSaslMechanismError) as exc:
            raise CannotStart(
                f"Kafka at {server} refused the user {credentials.username!r} ({credentials.sasl_mechanism}): "
                f"{exc}. Check {KAFKA_USERNAME.name} and {KAFKA_PASSWORD.name} (or {KAFKA_PASSWORD.name}_FILE)"
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise CannotStart(
                f"Kafka at {server} presented a certificate that {KAFKA_CA_FILE.name}="
                f"{credentials.ca_file or '(the system CAs)'} does not vouch for: {exc.verify_message}"
            ) from exc
        except (OSError, TimeoutError, KafkaError) as exc:
            log.warning("checking the credentials with Kafka at %s: unreachable (%r)", server, exc)
            continue
        conn.close()
        return


# No linger: the producer keeps one request in flight per broker, and what is sent while it is out goes
# together in the next, so under load records batch anyway; a linger only delayed every publish that
# found the broker idle (each of quiz_svc's answer batches, say) by that long.
_LINGER_MS = 0


class KafkaPublisher:
    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "quizmesh",
        credentials: KafkaCredentials = KAFKA_WITHOUT_CREDENTIALS,
    ) -> None:
        self._options = {
            **connection_options(bootstrap, credentials),
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": _LINGER_MS,
            "max_batch_size": 256 * 1024,
            "request_timeout_ms": 10_000,
        }
        self._producer: AIOKafkaProducer | None = None
        self._start_lock = asyncio.Lock()

    async def start(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        # Created on first use: a producer that was built but never started warns at garbage collection.
        async with self._start_lock:
            if self._producer is not None:
                return self._producer
            producer = AIOKafkaProducer(**self._options)
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
            return producer

    async def publish(self, records: Sequence[Record], *, timeout_s: float) -> None:
        try:
            # Not wait_for: on Python 3.11 that runs the publication in a task of its own, once per batch.
            async with asyncio.timeout(timeout_s):
                await self._publish(records)
        except (TimeoutError, KafkaError) as exc:
            raise EventBusUnavailable(f"Kafka did not acknowledge {len(records)} events: {exc!r}") from exc

    async def _publish(self, records: Sequence[Record]) -> None:
        producer = await self.start()
        try:
            # send() only enqueues into the accumulator; all records of a call share its batches.
            pending = [
                await producer.send(r.topic, r.value, key=r.key.encode(), headers=list(r.headers)) for r in records
            ]
            await asyncio.gather(*pending)
        except KafkaError as exc:
            if not exc.retriable and not isinstance(exc, KafkaTimeoutError):
                await self._discard(producer, exc)
            raise

    async def _discard(self, producer: AIOKafkaProducer, cause: KafkaError) -> None:
        """Replaces a producer whose idempotent session is broken for good.

        After the broker loses its producer state (a SIGKILL, say) every send fails with
        OutOfOrderSequenceNumber until a new producer ID is obtained. The failed records reach Kafka on
        the player's retry, under the same event IDs, which every sink deduplicates.
        """
        async with self._start_lock:
            current = self._producer is producer
            if current:
                self._producer = None
        if not current:
            return  # another publish already replaced it
        log.warning("discarding the Kafka producer after %r; the next publish starts a new one", cause)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 5)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def _records(batches: dict[object, list[object]]) -> list[ConsumedRecord]:
    out: list[ConsumedRecord] = []
    for messages in batches.values():
        for m in messages:
            out.append(
                ConsumedRecord(
                    topic=m.topic,  # type: ignore[attr-defined]
                    partition=m.partition,  # type: ignore[attr-defined]
                    offset=m.offset,  # type: ignore[attr-defined]
                    key=(m.key or b"").decode(),  # type: ignore[attr-defined]
                    value=m.value,  # type: ignore[attr-defined]
                    headers=tuple(m.headers or ()),  # type: ignore[attr-defined]
                )
            )
    return out


# A group member gets this long without heartbeats before the broker hands its partitions on.
SESSION_TIMEOUT_MS = 10_000
# aiokafka recovers from a broker restart on its own within a session timeout or two; a member still
# not working after three is stuck (see KafkaConsumer) and is replaced.
STALL_LIMIT_S = 3 * SESSION_TIMEOUT_MS / 1000
# A replacement's start() returns once it holds an assignment, which waits out a rebalance (up to the
# rebalance timeout) when the stuck member still counts as one.
REPLACEMENT_START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 5.0
COMMIT_DEADLINE_S = 5.0
LAG_READ_DEADLINE_S = 1.0


class KafkaConsumer:
    """A consumer group member with manual commits: at-least-once into idempotent sinks.

    After a broker SIGKILL and restart, aiokafka's member was seen to stay out of its group for good
    (fault scenario 4, docs/reliability.md). So every poll checks that the member works: a known
    coordinator, a joined generation, an assignment, and records arriving or none waiting. A member
    that fails the check for stall_limit_s is replaced by a new one, which starts from the last
    committed offsets: what the old one returned but did not commit is delivered again, and the sinks
    ignore it.
    """

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topics: Sequence[str],
        *,
        client_id: str = "quizmesh",
        batch_wait_ms: int = 0,
        stall_limit_s: float = STALL_LIMIT_S,
        credentials: KafkaCredentials = KAFKA_WITHOUT_CREDENTIALS,
    ) -> None:
        self._group = group
        self._topics = tuple(topics)
        self._options = {
            **connection_options(bootstrap, credentials),
            "group_id": group,
            "client_id": client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": 2000,
            "session_timeout_ms": SESSION_TIMEOUT_MS,
            "heartbeat_interval_ms": 1_000,
            "rebalance_timeout_ms": 10_000,
        }
        self._consumer = AIOKafkaConsumer(*self._topics, **self._options)
        self._lag: dict[tuple[str, int], int] = {}
        self._stall_limit_s = stall_limit_s
        self._batch_wait_s = batch_wait_ms / 1000
        self._paused_until: float | None = None
        self._stalled_since: float | None = None
        self._last_poll = time.monotonic()
        self.replacements = 0

    async def start(self) -> None:
        await self._consumer.start()

    async def poll(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        await self._wait_for_batch()
        try:
            batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            # aiokafka hands a failure of its coordination here, to the caller; one of its heartbeat
            # task comes back on every later call (the finished task is restarted only by a rejoin).
            # Either way the member is not working, which the watchdog below takes care of.
            if self._stalled_since is None:
                log.warning("the Kafka consumer of group %s failed: %r", self._group, exc)
            await self._watch(working=False)
            await asyncio.sleep(timeout_s)
            return []
        await self._measure_lag()
        records = _records(batches)
        await self._watch(working=_is_member(self._consumer) and (bool(records) or self._caught_up()))
        if records and self._batch_wait_s > 0:
            self._consumer.pause(*self._consumer.assignment())
            self._paused_until = time.monotonic() + self._batch_wait_s
        return records

    async def _wait_for_batch(self) -> None:
        """Lets records accumulate in Kafka for the rest of the batch wait that began when the last
        records were returned, fetching nothing meanwhile; then fetches again, and the fetch returns
        as soon as anything is there.

        So a busy member fetches about once per wait, in batches, and the first record after a quiet
        spell is not held up at all. Kafka's own way, a fetch held until a minimum size or the wait, had
        the same batches under load but cost a held fetch every wait while idle: at 50 fetches a second
        per member, about a tenth of a core in the broker and the services together.
        """
        if self._paused_until is None:
            return
        delay = self._paused_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self._paused_until = None
        self._consumer.resume(*self._consumer.paused())

    def _caught_up(self) -> bool:
        """Every assigned partition was fetched and nothing lies beyond its position (none assigned
        counts too: a group with more members than partitions leaves some idle)."""
        return all(self._lag.get((tp.topic, tp.partition)) == 0 for tp in self._consumer.assignment())

    async def _watch(self, *, working: bool) -> None:
        now = time.monotonic()
        previous_poll, self._last_poll = self._last_poll, now
        if working:
            self._stalled_since = None
        elif self._stalled_since is None or now - previous_poll > SESSION_TIMEOUT_MS / 1000:
            # A caller that did not poll for that long (its store was down, say) may have cost the
            # membership itself; aiokafka rejoins once polled again, so the clock starts afresh.
            self._stalled_since = now
        elif now - self._stalled_since >= self._stall_limit_s:
            await self._replace(now - self._stalled_since)
            self._stalled_since = None

    async def _replace(self, stalled_s: float) -> None:
        """Starts a new member before stopping the stuck one, so a broker that is simply down (the new
        one cannot start either) costs nothing: the old one stays and may yet recover."""
        log.warning(
            "the Kafka consumer of group %s has not been a working member for %.0f s; replacing it",
            self._group,
            stalled_s,
        )
        replacement = AIOKafkaConsumer(*self._topics, **self._options)
        try:
            await asyncio.wait_for(replacement.start(), REPLACEMENT_START_DEADLINE_S)
        except BaseException as exc:
            await _stop_quietly(replacement)
            if not isinstance(exc, Exception):
                raise
            log.warning("no replacement for the Kafka consumer of group %s yet: %r", self._group, exc)
            return
        stuck, self._consumer = self._consumer, replacement
        self._lag = {}
        self._paused_until = None
        self.replacements += 1
        await _stop_quietly(stuck)
        log.warning("replaced the Kafka consumer of group %s", self._group)

    async def _measure_lag(self) -> None:
        # The highwater is known once a partition was fetched, and then so is the position, which
        # position() returns without waiting, unless a reset of the position is pending: the deadline
        # keeps that from holding up the poll (the partition's lag stays unknown). Records fetched but
        # not yet returned count as lag.
        lag: dict[tuple[str, int], int] = {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LAG_READ_DEADLINE_S):
                for tp in self._consumer.assignment():
                    try:
                        highwater = self._consumer.highwater(tp)
                        if highwater is not None:
                            lag[(tp.topic, tp.partition)] = max(0, highwater - await self._consumer.position(tp))
                    except (AssertionError, IllegalStateError):
                        continue  # revoked by a rebalance meanwhile
                    except KafkaError:
                        break  # a coordination failure, which the next getmany() reports
        self._lag = lag

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind each assigned partition's end at the last poll, by (topic, partition)."""
        return self._lag

    async def commit(self) -> None:
        try:
            # Without a coordinator aiokafka retries a commit for ever; the sinks are idempotent, so
            # an uncommitted batch is merely delivered again.
            await asyncio.wait_for(self._consumer.commit(), COMMIT_DEADLINE_S)
        except (CommitFailedError, IllegalStateError):
            # The group rebalanced under us (IllegalStateError: it is still rebalancing, no partitions
            # are assigned); the new owner re-reads from the last commit and the sinks ignore what
            # they already hold.
            log.warning("offset commit lost to a rebalance; records will be redelivered")
        except TimeoutError:
            log.warning("offset commit timed out after %.0f s; records will be redelivered", COMMIT_DEADLINE_S)

    async def close(self) -> None:
        await self._consumer.stop()


def _is_member(consumer: AIOKafkaConsumer) -> bool:
    """Whether aiokafka holds a working group membership: a known coordinator, a joined generation and
    an assignment (possibly empty), kept up by a live coordination task.

    aiokafka (0.14) has no public view of this, so it is read from its coordinator and subscription
    state; tests/shared/test_kafka_consumer_watchdog.py breaks if those change.
    """
    coordinator = consumer._coordinator
    subscription = consumer._subscription.subscription
    return bool(
        coordinator is not None
        and not coordinator._coordination_task.done()
        and coordinator.coordinator_id is not None
        and coordinator.generation > 0
        and subscription is not None
        and subscription.assignment is not None
    )


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    # A stuck member may not manage to leave its group; the broker drops it after a session timeout.
    try:
        await asyncio.wait_for(consumer.stop(), STOP_DEADLINE_S)
    except Exception as exc:
        log.warning("stopping a Kafka consumer failed: %r", exc)


class KafkaTailReader:
    """Reads all partitions from their end, without a group, for relaying live updates."""

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        *,
        client_id: str = "quizmesh",
        credentials: KafkaCredentials = KAFKA_WITHOUT_CREDENTIALS,
    ) -> None:
        self._consumer = AIOKafkaConsumer(
            *topics,
            **connection_options(bootstrap, credentials),
            group_id=None,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )

    async def start(self) -> None:
        await self._consumer.start()

    async def poll(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return _records(batches)

    async def close(self) -> None:
        await self._consumer.stop()


class KafkaGroupProgress:
    """Reads partitions' ends (a consumer outside any group) and a group's committed offsets (the admin
    client), both started on first use. Raises EventBusUnavailable when Kafka cannot tell."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "quizmesh",
        credentials: KafkaCredentials = KAFKA_WITHOUT_CREDENTIALS,
    ) -> None:
        self._options = connection_options(bootstrap, credentials)
        self._client_id = client_id
        self._clients: tuple[AIOKafkaConsumer, AIOKafkaAdminClient] | None = None
        self._start_lock = asyncio.Lock()

    async def _started(self) -> tuple[AIOKafkaConsumer, AIOKafkaAdminClient]:
        async with self._start_lock:
            if self._clients is None:
                reader = AIOKafkaConsumer(**self._options, client_id=self._client_id, group_id=None)
                admin = AIOKafkaAdminClient(**self._options, client_id=self._client_id)
                try:
                    await reader.start()
                    await admin.start()
                except BaseException:
                    await _stop_quietly(reader)
                    await admin.close()
                    raise
                self._clients = (reader, admin)
            return self._clients

    async def end_offsets(self, topics: Sequence[str], key: str) -> dict[Partition, int]:
        try:
            reader, admin = await self._started()
            described = {t["topic"]: t for t in await admin.describe_topics(list(topics))}
            partitions = []
            for topic in topics:
                known = sorted(p["partition"] for p in described.get(topic, {}).get("partitions", ()))
                if not known:
                    raise EventBusUnavailable(f"Kafka knows no topic {topic!r}")
                # The partition the producers' default partitioner gives the key (murmur2, as Java's).
                partitions.append(TopicPartition(topic, DefaultPartitioner()(key.encode(), known, known)))
            ends = await reader.end_offsets(partitions)
        except KafkaError as exc:
            raise EventBusUnavailable(f"Kafka did not tell the end of {list(topics)}: {exc!r}") from exc
        return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}

    async def committed(self, group: str, partitions: Sequence[Partition]) -> dict[Partition, int]:
        try:
            _, admin = await self._started()
            offsets = await admin.list_consumer_group_offsets(
                group, partitions=[TopicPartition(topic, p) for topic, p in partitions]
            )
        except KafkaError as exc:
            raise EventBusUnavailable(f"Kafka did not tell group {group}'s offsets: {exc!r}") from exc
        found = {(tp.topic, tp.partition): max(0, meta.offset) for tp, meta in offsets.items()}
        return {partition: found.get(partition, 0) for partition in partitions}

    async def close(self) -> None:
        if self._clients is not None:
            reader, admin = self._clients
            self._clients = None
            await _stop_quietly(reader)
            await admin.close()
