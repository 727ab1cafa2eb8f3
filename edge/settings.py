"""The edge's configuration, read from the environment once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from quizmesh.settings import (
    LEADERBOARD_ADDR,
    PERSISTENCE_ADDR,
    QUIZ_ADDR,
    FromEnvironment,
    Integer,
    Port,
    SettingsError,
    Text,
    setting,
)

HOST = Text("QUIZMESH_EDGE_HOST", "The address the edge's HTTP and WebSocket server listens on.", default="127.0.0.1")
PORT = Port("QUIZMESH_EDGE_PORT", "The edge's HTTP and WebSocket port (0 picks a free one).", default=8080)
ALLOWED_ORIGINS = Text(
    "QUIZMESH_EDGE_ALLOWED_ORIGINS",
    "Comma-separated origins (scheme://host[:port]) allowed to open a WebSocket; empty allows same-host pages "
    "and clients that send no Origin.",
    default="",
)
LEADERBOARD_TOP_N = Integer(
    "QUIZMESH_EDGE_LEADERBOARD_TOP_N", "Entries in each leaderboard_updated.", default=10, minimum=1, maximum=1000
)
BROADCAST_SLICE = Integer(
    "QUIZMESH_EDGE_BROADCAST_SLICE",
    "Sockets a leaderboard fan-out writes before letting the edge's other work run (replies, reads); smaller "
    "slices answer sooner during a big quiz's broadcast, larger ones cost slightly less CPU.",
    default=500,
    minimum=1,
)
ANSWER_BATCH_SIZE = Integer(
    "QUIZMESH_EDGE_ANSWER_BATCH_SIZE",
    "At most this many answers share one batch (a message on an answer stream, or a BatchSubmitAnswers call).",
    default=256,
    minimum=1,
)
ANSWER_BATCH_LINGER_MS = Integer(
    "QUIZMESH_EDGE_ANSWER_BATCH_LINGER_MS", "How long an answer may wait for others to share its call.", default=2
)
ANSWER_BATCHES_IN_FLIGHT = Integer(
    "QUIZMESH_EDGE_ANSWER_BATCHES_IN_FLIGHT",
    "Answer calls in flight at once; beyond them, answers wait for one to return (and batch up). "
    "One makes the fewest calls, each paid for per call by every hop behind the edge.",
    default=1,
    minimum=1,
)
ANSWER_STREAMS = Integer(
    "QUIZMESH_EDGE_ANSWER_STREAMS",
    "StreamAnswers calls the edge keeps open to quiz_svc and sends its answer batches over in turn; each is "
    "placed on a replica like any call, so more spread one edge's answers over more replicas.",
    default=2,
    minimum=1,
)
ANSWER_STREAM_MAX_AGE_MS = Integer(
    "QUIZMESH_EDGE_ANSWER_STREAM_MAX_AGE_MS",
    "After this long an answer stream is closed once its batches are answered, and a new one opened, so that "
    "answers spread again over quiz_svc replicas that started since.",
    default=30_000,
    minimum=1,
)
DRAIN_MS = Integer(
    "QUIZMESH_EDGE_DRAIN_MS",
    "On SIGTERM, how long the edge reports unready but keeps serving before it closes its sockets, so a load "
    "balancer's health checks take it out of rotation first.",
    default=0,
)
TRUSTED_PROXY_HOPS = Integer(
    "QUIZMESH_EDGE_TRUSTED_PROXY_HOPS",
    "Proxies in front of the edge that append to X-Forwarded-For (Envoy's xff_num_trusted_hops): the client "
    "address is the one this many hops from the right; 0 takes the TCP peer.",
    default=0,
)
MESSAGES_PER_S = Integer(
    "QUIZMESH_EDGE_MESSAGES_PER_S", "Client messages per second per connection (sustained).", default=20, minimum=1
)
MESSAGES_BURST = Integer(
    "QUIZMESH_EDGE_MESSAGES_BURST", "Client messages per connection in a burst.", default=40, minimum=1
)
JOINS_PER_MIN = Integer(
    "QUIZMESH_EDGE_JOINS_PER_MIN",
    "join_quiz and resume messages per minute per client address.",
    default=10,
    minimum=1,
)
MEDIA_CACHE_MB = Integer(
    "QUIZMESH_EDGE_MEDIA_CACHE_MB",
    "Megabytes of question pictures and clips each edge keeps in memory (GET /media/...), so that players "
    "fetching the same file cause one read from quiz_svc per edge.",
    default=64,
    minimum=1,
)


def parse_origins(raw: str) -> frozenset[str]:
    """`https://a.example, https://b.example/` → normalized origins (lower case, no trailing slash)."""
    origins = set()
    for item in raw.split(","):
        origin = item.strip().rstrip("/").lower()
        if not origin:
            continue
        if "://" not in origin:
            raise SettingsError(f"{ALLOWED_ORIGINS.name} entry {item.strip()!r} must be scheme://host[:port]")
        origins.add(origin)
    return frozenset(origins)


@dataclass(frozen=True)
class Settings(FromEnvironment):
    host: str = setting(HOST)
    port: int = setting(PORT)
    quiz_addr: str = setting(QUIZ_ADDR)
    leaderboard_addr: str = setting(LEADERBOARD_ADDR)
    # Read only by the results export (GET /quizzes/{quiz_id}/results.csv); not needed to play.
    persistence_addr: str = setting(PERSISTENCE_ADDR)
    # Origins allowed to open a WebSocket; empty allows same-host pages and clients that send no Origin.
    allowed_origins: frozenset[str] = setting(ALLOWED_ORIGINS, parse_origins)
    leaderboard_top_n: int = setting(LEADERBOARD_TOP_N)
    broadcast_slice: int = setting(BROADCAST_SLICE)
    answer_batch_size: int = setting(ANSWER_BATCH_SIZE)
    answer_batch_linger_ms: int = setting(ANSWER_BATCH_LINGER_MS)
    # Beyond this many answer calls in flight, answers wait for one to return (edge/upstream.py AnswerBatcher).
    answer_batches_in_flight: int = setting(ANSWER_BATCHES_IN_FLIGHT)
    # Answer batches travel as messages on these long-lived calls (edge/answer_streams.py).
    answer_streams: int = setting(ANSWER_STREAMS)
    answer_stream_max_age_s: float = setting(ANSWER_STREAM_MAX_AGE_MS, lambda ms: ms / 1000)
    # Rate limits (edge/limits.py): messages per connection, joins (join_quiz, resume) per client address.
    messages_per_s: int = setting(MESSAGES_PER_S)
    messages_burst: int = setting(MESSAGES_BURST)
    joins_per_min: int = setting(JOINS_PER_MIN)
    # On SIGTERM the edge reports unready (/readyz 503) but keeps serving this long before it closes its
    # sockets with 1012, so that a load balancer's health checks take it out of rotation first and
    # reconnecting clients land on another edge.
    drain_s: float = setting(DRAIN_MS, lambda ms: ms / 1000)
    # Proxies in front of the edge that append to X-Forwarded-For (edge/forwarded.py); 0 trusts none.
    trusted_proxy_hops: int = setting(TRUSTED_PROXY_HOPS)
    media_cache_bytes: int = setting(MEDIA_CACHE_MB, lambda mb: mb * 1024 * 1024)
    answer_deadline_s: float = 5.0
    call_deadline_s: float = 5.0
    readiness_deadline_s: float = 1.0
    # The largest text frame a client may send, in bytes of UTF-8 (docs/protocol.md); larger closes with 1009.
    max_frame_bytes: int = 64 * 1024
    heartbeat_s: float = 20.0
    # A socket whose unsent output exceeds this is skipped for leaderboards and cut off for quiz states.
    max_buffered_bytes: int = 1024 * 1024
    shutdown_grace_s: float = 5.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def aiohttp_max_msg_size(self) -> int:
        """aiohttp's max_msg_size for max_frame_bytes: aiohttp refuses a message of max_msg_size bytes
        or more, so the limit it is given is one byte above the largest frame accepted."""
        return self.max_frame_bytes + 1
