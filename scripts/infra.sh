#!/usr/bin/env bash
# Local test infrastructure for quizmesh: a real Kafka (KRaft, single node), Redis and
# PostgreSQL, all on 127.0.0.1, with data, logs and PID files under $REPO/.infra/.
#
# Usage:
#   scripts/infra.sh up                 install what is missing, start all, wait until ready
#   scripts/infra.sh down               stop everything this script started (by PID file)
#   scripts/infra.sh status             print each component; exit 0 only if all are running
#   scripts/infra.sh env                print export lines for the test suite
#   scripts/infra.sh start COMPONENT    start one of kafka|redis|postgres and wait until ready
#   scripts/infra.sh stop COMPONENT [--kill]
#                                       stop one (graceful, SIGKILL after a timeout);
#                                       --kill sends SIGKILL at once (fault tests)
#   scripts/infra.sh clean              delete data and logs (all must be stopped; the Kafka
#                                       jar cache in .infra/kafka/libs is kept)
#   scripts/infra.sh kafka-cli CLASS [ARGS...]
#                                       run a Kafka CLI class with the cached jars, e.g.
#                                       kafka-cli org.apache.kafka.tools.TopicCommand \
#                                         --bootstrap-server 127.0.0.1:19092 --list
#
# Only processes whose PIDs are in .infra/pids/*.pid (and whose command line matches what
# this script launched) are ever signalled. Nothing is killed by name.
#
# Tunables (environment): INFRA_KAFKA_TIMEOUT (s, default 120), INFRA_REDIS_TIMEOUT (20),
# INFRA_PG_TIMEOUT (60), INFRA_STOP_TIMEOUT (30), PG_BIN (PostgreSQL bin dir).
# A second, private set (fault tests stop and kill it without disturbing the shared one):
# QUIZMESH_INFRA_DIR (default $REPO/.infra), QUIZMESH_INFRA_KAFKA_PORT (19092),
# QUIZMESH_INFRA_KAFKA_CONTROLLER_PORT (19093), QUIZMESH_INFRA_REDIS_PORT (16379),
# QUIZMESH_INFRA_PG_PORT (15432). The Kafka jar cache stays in $REPO/.infra/kafka/libs.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA="${QUIZMESH_INFRA_DIR:-$REPO/.infra}"
PIDS="$INFRA/pids"
LOGS="$INFRA/logs"
KAFKA_SRC="$REPO/scripts/kafka"

KAFKA_PORT="${QUIZMESH_INFRA_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${QUIZMESH_INFRA_KAFKA_CONTROLLER_PORT:-19093}"
REDIS_PORT="${QUIZMESH_INFRA_REDIS_PORT:-16379}"
PG_PORT="${QUIZMESH_INFRA_PG_PORT:-15432}"
PG_DB=quizmesh
PG_USER=quizmesh
PG_PASSWORD=quizmesh
KAFKA_PARTITIONS=8
KAFKA_TOPICS=(user_joined_quiz answer_submitted leaderboard_updated user_left_quiz)

KAFKA_TIMEOUT="${INFRA_KAFKA_TIMEOUT:-120}"
REDIS_TIMEOUT="${INFRA_REDIS_TIMEOUT:-20}"
PG_TIMEOUT="${INFRA_PG_TIMEOUT:-60}"
STOP_TIMEOUT="${INFRA_STOP_TIMEOUT:-30}"

COMPONENTS=(kafka redis postgres)

# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

show_log_tail() { # file [lines]
    local f="$1" n="${2:-40}"
    if [[ -f "$f" ]]; then
        printf '[infra] ---- last %s lines of %s ----\n' "$n" "$f" >&2
        tail -n "$n" "$f" >&2 || true
        printf '[infra] ---- end of %s ----\n' "$f" >&2
    else
        printf '[infra] (no log file at %s)\n' "$f" >&2
    fi
}

now() { date +%s; }

port_open() { # port -> 0 if something accepts TCP connections on 127.0.0.1:port
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pidfile() { echo "$PIDS/$1.pid"; }

read_pid() { # component -> prints pid (may be empty)
    local f
    f="$(pidfile "$1")"
    [[ -f "$f" ]] || return 0
    head -n1 "$f" | tr -dc '0-9'
}

cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

# The command line must show that the PID is the process we launched (guards against
# PID reuse and against touching anything else on the machine).
pid_matches() { # component pid
    local c="$1" pid="$2" cmd
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    cmd="$(cmdline_of "$pid")"
    case "$c" in
        kafka) [[ "$cmd" == *kafka.Kafka* && "$cmd" == *"$INFRA/kafka/server.properties"* ]] ;;
        redis) [[ "$cmd" == *redis-server*"$REDIS_PORT"* ]] ;;
        postgres) [[ "$cmd" == *postgres* && "$cmd" == *"$PG_DATA"* ]] ;;
        *) return 1 ;;
    esac
}

is_running() { # component -> 0 if its PID file names a live process we launched
    local pid
    pid="$(read_pid "$1")"
    pid_matches "$1" "$pid"
}

ensure_dirs() {
    mkdir -p "$INFRA" "$PIDS" "$LOGS"
    chmod 755 "$INFRA"
}

ensure_gitignore() {
    local gi="$REPO/.gitignore"
    if [[ ! -f "$gi" ]] || ! grep -qxF '.infra/' "$gi"; then
        # append, never overwrite (others edit this file too)
        if [[ -s "$gi" && -n "$(tail -c1 "$gi")" ]]; then printf '\n' >>"$gi"; fi
        printf '.infra/\n' >>"$gi"
    fi
}

apt_install() { # packages...
    if [[ $EUID -ne 0 ]]; then
        die "missing $*: install it (e.g. 'sudo apt-get install -y $*') and re-run"
    fi
    command -v apt-get >/dev/null || die "missing $* and no apt-get on this machine; install $* by hand"
    log "installing $* with apt-get"
    # RUNLEVEL=1 asks Debian's invoke-rc.d not to start the packaged system services;
    # we never use them (our instances run on their own ports).
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "$@" >"$LOGS/apt-install.log" 2>&1 \
        || { show_log_tail "$LOGS/apt-install.log"; die "apt-get install $* failed"; }
}

# Wait for a predicate; fail with the log tail. wait_for NAME TIMEOUT LOGFILE PIDCOMPONENT CMD...
wait_for() {
    local name="$1" timeout="$2" logf="$3" comp="$4"
    shift 4
    local deadline=$(($(now) + timeout))
    while true; do
        if "$@"; then return 0; fi
        if [[ -n "$comp" ]] && ! is_running "$comp"; then
            show_log_tail "$logf"
            die "$name exited while starting (see $logf)"
        fi
        if (($(now) >= deadline)); then
            show_log_tail "$logf"
            die "$name not ready after ${timeout}s (see $logf). It is left running: 'scripts/infra.sh start $comp' waits again, 'scripts/infra.sh stop $comp' stops it; raise INFRA_*_TIMEOUT on a slow machine"
        fi
        sleep 0.5
    done
}

proc_state() { awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true; }
# start time (clock ticks since boot) identifies a process beyond its PID (PIDs get reused)
proc_start() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}' || true; }

# 0 while PID exists and is not a zombie; a zombie is given a few seconds to be reaped
# (a server still counts as present to e.g. postgres' lock-file check until then).
wait_gone() { # pid timeout_seconds -> 0 if gone
    local pid="$1" deadline=$(($(now) + $2)) zdeadline=""
    while kill -0 "$pid" 2>/dev/null; do
        if [[ "$(proc_state "$pid")" == Z ]]; then
            [[ -n "$zdeadline" ]] || zdeadline=$(($(now) + 5))
            (($(now) >= zdeadline)) && return 0 # dead, just never reaped by its parent
        fi
        (($(now) >= deadline)) && return 1
        sleep 0.2
    done
    return 0
}

# Stop one process by its PID file. signal: TERM/INT (graceful) or KILL.
# Direct children of that PID (postgres backends) are waited for too, so that a following
# start does not trip over them; they are SIGKILLed only if they outlive the timeout.
stop_pid() { # component signal
    local c="$1" sig="$2" pid f kids k
    f="$(pidfile "$c")"
    pid="$(read_pid "$c")"
    if [[ -z "$pid" ]]; then
        log "$c: not running (no PID file)"
        rm -f "$f"
        return 0
    fi
    if ! pid_matches "$c" "$pid"; then
        log "$c: PID $pid from $f is not running (or is not ours); removing stale PID file"
        rm -f "$f"
        return 0
    fi
    kids=""
    for k in $(ps -o pid= --ppid "$pid" 2>/dev/null || true); do kids+=" $k:$(proc_start "$k")"; done
    log "$c: sending SIG$sig to PID $pid"
    kill -s "$sig" "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
        log "$c: PID $pid still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -s KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || die "$c: PID $pid did not exit even after SIGKILL"
    fi
    local kp ks
    for k in $kids; do
        kp="${k%%:*}" ks="${k#*:}"
        if ! wait_gone "$kp" 10 && [[ "$(proc_start "$kp")" == "$ks" ]]; then
            log "$c: child PID $kp of $pid still alive; sending SIGKILL"
            kill -s KILL "$kp" 2>/dev/null || true
            wait_gone "$kp" 5 || log "$c: WARNING: child PID $kp did not exit"
        fi
    done
    rm -f "$f"
    log "$c: stopped"
}

# ---------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------
KAFKA_DIR="$INFRA/kafka"
KAFKA_LIBS="$REPO/.infra/kafka/libs"
KAFKA_LOG="$LOGS/kafka.log"
KAFKA_CONF="$KAFKA_DIR/server.properties"
TOOLS_JOPTS=(-Xms64m -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true
    "-Dlog4j.configuration=file:$KAFKA_SRC/tools-log4j.properties")

kafka_java() { command -v java >/dev/null || die "java not found: install a JDK 17 (apt-get install -y openjdk-17-jre-headless)"; }

kafka_ensure_libs() {
    kafka_java
    local stamp want
    want="$(sha256sum "$KAFKA_SRC/pom.xml" | cut -d' ' -f1)"
    stamp="$KAFKA_LIBS/.pom.sha256"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install -y maven) to fetch the Kafka jars"
    log "kafka: fetching jars with Maven into $KAFKA_LIBS (first run only)"
    rm -rf "$KAFKA_LIBS"
    mkdir -p "$KAFKA_LIBS"
    local t0
    t0=$(now)
    if ! mvn -q -B -f "$KAFKA_SRC/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >"$LOGS/kafka-mvn.log" 2>&1; then
        show_log_tail "$LOGS/kafka-mvn.log" 60
        rm -rf "$KAFKA_LIBS"
        die "kafka: Maven could not fetch the jars (see $LOGS/kafka-mvn.log)"
    fi
    compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null || die "kafka: Maven finished but no kafka_2.13 jar in $KAFKA_LIBS"
    echo "$want" >"$stamp"
    log "kafka: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars fetched in $(($(now) - t0))s"
}

kafka_write_config() {
    mkdir -p "$KAFKA_DIR/data"
    cat >"$KAFKA_CONF" <<EOF
# Generated by scripts/infra.sh -- edits are overwritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=$KAFKA_PARTITIONS
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
# After an unclean stop (SIGKILL), a restarted broker is refused (DUPLICATE_BROKER_REGISTRATION)
# until its old session expires: keep that short so fault tests restart fast (default 9s).
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
log.segment.bytes=16777216
log.cleaner.dedupe.buffer.size=8388608
delete.topic.enable=true
EOF
}

kafka_launch() { # start the JVM without waiting
    if is_running kafka; then
        log "kafka: already running (PID $(read_pid kafka))"
        return 0
    fi
    rm -f "$(pidfile kafka)"
    if port_open "$KAFKA_PORT" || port_open "$KAFKA_CONTROLLER_PORT"; then
        die "kafka: port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT on 127.0.0.1 is already in use by a process this script did not start (check: ss -ltnp | grep -E ':1909[23]')"
    fi
    kafka_ensure_libs
    kafka_write_config
    local cp="$KAFKA_LIBS/*"
    if [[ ! -s "$KAFKA_DIR/cluster.id" ]]; then
        java "${TOOLS_JOPTS[@]}" -cp "$cp" kafka.tools.StorageTool random-uuid >"$KAFKA_DIR/cluster.id.tmp" 2>>"$LOGS/kafka-storage.log" \
            || { show_log_tail "$LOGS/kafka-storage.log"; die "kafka: StorageTool random-uuid failed"; }
        tr -d '[:space:]' <"$KAFKA_DIR/cluster.id.tmp" >"$KAFKA_DIR/cluster.id"
        rm -f "$KAFKA_DIR/cluster.id.tmp"
    fi
    # -g: already formatted directories are left alone, so this is safe on every start.
    java "${TOOLS_JOPTS[@]}" -cp "$cp" kafka.tools.StorageTool format -g -t "$(cat "$KAFKA_DIR/cluster.id")" \
        -c "$KAFKA_CONF" >>"$LOGS/kafka-storage.log" 2>&1 \
        || { show_log_tail "$LOGS/kafka-storage.log"; die "kafka: formatting $KAFKA_DIR/data failed (if the cluster id changed, delete $KAFKA_DIR/data)"; }

    [[ -f "$KAFKA_LOG" ]] && mv -f "$KAFKA_LOG" "$KAFKA_LOG.prev"
    local jopts=(-Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
        -Djava.awt.headless=true "-Dkafka.logs.dir=$LOGS"
        "-Dlog4j.configuration=file:$KAFKA_SRC/log4j.properties")
    # New session (setsid) so signals to the caller's process group do not reach it; the
    # inner shell records its own PID and then becomes the JVM (exec), so the PID is exact.
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$(pidfile kafka)" \
        java "${jopts[@]}" -cp "$cp" kafka.Kafka "$KAFKA_CONF" \
        </dev/null >"$KAFKA_LOG" 2>&1 9>&- &
    local deadline=$(($(now) + 5))
    while [[ ! -s "$(pidfile kafka)" ]] && (($(now) < deadline)); do sleep 0.1; done
    [[ -s "$(pidfile kafka)" ]] || die "kafka: launcher did not write $(pidfile kafka)"
    log "kafka: launched (PID $(read_pid kafka)), log $KAFKA_LOG"
}

kafka_started() { grep -q 'Kafka Server started' "$KAFKA_LOG" 2>/dev/null && port_open "$KAFKA_PORT"; }

kafka_topics() { # args for TopicCommand
    java "${TOOLS_JOPTS[@]}" -cp "$KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "127.0.0.1:$KAFKA_PORT" "$@"
}

kafka_create_topics() {
    local existing missing=() t out
    if ! existing="$(kafka_topics --list 2>>"$LOGS/kafka-topics.log")"; then
        show_log_tail "$LOGS/kafka-topics.log"
        show_log_tail "$KAFKA_LOG"
        die "kafka: listing topics failed (see $LOGS/kafka-topics.log)"
    fi
    for t in "${KAFKA_TOPICS[@]}"; do
        grep -qxF "$t" <<<"$existing" || missing+=("$t")
    done
    for t in "${missing[@]+"${missing[@]}"}"; do
        if ! out="$(kafka_topics --create --if-not-exists --topic "$t" --partitions "$KAFKA_PARTITIONS" \
            --replication-factor 1 2>&1)"; then
            printf '%s\n' "$out" >>"$LOGS/kafka-topics.log"
            show_log_tail "$LOGS/kafka-topics.log"
            show_log_tail "$KAFKA_LOG"
            die "kafka: creating topic $t failed"
        fi
        log "kafka: created topic $t ($KAFKA_PARTITIONS partitions)"
    done
}

kafka_wait() {
    local t0
    t0=$(now)
    wait_for kafka "$KAFKA_TIMEOUT" "$KAFKA_LOG" kafka kafka_started
    kafka_create_topics
    log "kafka: ready on 127.0.0.1:$KAFKA_PORT (waited $(($(now) - t0))s)"
}

start_kafka() {
    kafka_launch # says so and does nothing when it is already running
    kafka_wait   # readiness and topics are checked either way
}

# ---------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------
REDIS_DIR="$INFRA/redis"
REDIS_LOG="$LOGS/redis.log"

redis_cli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
redis_ping() { [[ "$(redis_cli ping 2>/dev/null)" == PONG ]]; }

start_redis() {
    if is_running redis; then
        log "redis: already running (PID $(read_pid redis))"
        wait_for redis "$REDIS_TIMEOUT" "$REDIS_LOG" redis redis_ping
        return 0
    fi
    rm -f "$(pidfile redis)"
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        apt_install redis-server redis-tools
    fi
    if port_open "$REDIS_PORT"; then
        die "redis: port $REDIS_PORT on 127.0.0.1 is already in use by a process this script did not start (check: ss -ltnp | grep :$REDIS_PORT)"
    fi
    mkdir -p "$REDIS_DIR"
    [[ -f "$REDIS_LOG" ]] && mv -f "$REDIS_LOG" "$REDIS_LOG.prev"
    # daemonize: redis double-forks, calls setsid and writes the PID file itself.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
        --daemonize yes --pidfile "$(pidfile redis)" --logfile "$REDIS_LOG" \
        --dir "$REDIS_DIR" --appendonly no --save '' 9>&- \
        || { show_log_tail "$REDIS_LOG"; die "redis: redis-server failed to start"; }
    local deadline=$(($(now) + 5))
    while [[ ! -s "$(pidfile redis)" ]] && (($(now) < deadline)); do sleep 0.1; done
    [[ -s "$(pidfile redis)" ]] || { show_log_tail "$REDIS_LOG"; die "redis: no PID file written"; }
    wait_for redis "$REDIS_TIMEOUT" "$REDIS_LOG" redis redis_ping
    log "redis: ready on 127.0.0.1:$REDIS_PORT (PID $(read_pid redis))"
}

# ---------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------
# PostgreSQL refuses to run as root, so as root its tree belongs to the 'postgres' user, who must be able
# to traverse every directory above it. A checkout inside a private directory (mktemp -d makes mode 700)
# does not allow that; its PostgreSQL tree then lives in /tmp, under a name derived from this infra dir.
postgres_can_reach() {
    local d="$1"
    while [[ "$d" != / ]]; do
        if [[ -d "$d" ]] && ! runuser -u postgres -- test -x "$d"; then
            return 1
        fi
        d="$(dirname "$d")"
    done
}

PG_ROOT="$INFRA/pg"
if [[ $EUID -eq 0 ]] && id postgres >/dev/null 2>&1 && ! postgres_can_reach "$INFRA"; then
    PG_ROOT="/tmp/quizmesh-pg-$(printf '%s' "$INFRA" | sha256sum | cut -c1-16)"
fi
PG_DATA="$PG_ROOT/data"
PG_SOCK="$PG_ROOT/run"
PG_LOG="$PG_ROOT/log/postgres.log" # inside the postgres-owned tree so the server can write it

pg_find_bin() {
    if [[ -n "${PG_BIN:-}" ]]; then
        [[ -x "$PG_BIN/pg_ctl" ]] || die "PG_BIN=$PG_BIN has no pg_ctl"
        return 0
    fi
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$d/pg_ctl" && -x "$d/initdb" && -x "$d/postgres" ]]; then PG_BIN="$d"; return 0; fi
    done
    if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
        PG_BIN="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
        return 0
    fi
    return 1
}

pg_ensure_bin() {
    if ! pg_find_bin; then
        apt_install postgresql
        pg_find_bin || die "postgres: installed postgresql but found no pg_ctl under /usr/lib/postgresql/*/bin; set PG_BIN"
    fi
}

# Run a PostgreSQL binary as the owner of the data dir (postgres refuses to run as root).
pg_as_owner() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_prepare_dirs() {
    mkdir -p "$PG_ROOT" "$PG_SOCK" "$(dirname "$PG_LOG")"
    if [[ $EUID -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "postgres: no 'postgres' system user (install the postgresql package)"
        postgres_can_reach "$PG_ROOT" \
            || die "postgres: user 'postgres' cannot reach $PG_ROOT; let it traverse the directories above (chmod o+x)"
        chown postgres:postgres "$PG_ROOT" "$PG_SOCK" "$(dirname "$PG_LOG")"
        [[ -d "$PG_DATA" ]] && chown -R postgres:postgres "$PG_DATA"
    fi
    chmod 700 "$PG_SOCK"
}

pg_initdb() {
    [[ -s "$PG_DATA/PG_VERSION" ]] && return 0
    log "postgres: initdb into $PG_DATA"
    rm -rf "$PG_DATA"
    mkdir -p "$PG_DATA"
    [[ $EUID -eq 0 ]] && chown postgres:postgres "$PG_DATA"
    chmod 700 "$PG_DATA"
    pg_as_owner "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=trust --no-sync >"$LOGS/pg-initdb.log" 2>&1 \
        || { show_log_tail "$LOGS/pg-initdb.log"; rm -rf "$PG_DATA"; die "postgres: initdb failed"; }
    # Loopback only, trust auth (tests; password 'quizmesh' is accepted but not checked).
    pg_as_owner tee "$PG_DATA/pg_hba.conf" >/dev/null <<EOF
# Generated by scripts/infra.sh: test-only, loopback-only, trust.
local   all all                trust
host    all all 127.0.0.1/32   trust
EOF
    pg_as_owner tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF

# ---- scripts/infra.sh (test settings) ----
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_timezone = 'UTC'
timezone = 'UTC'
EOF
}

pg_ready() {
    "${PG_BIN:-/nonexistent}/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -d postgres -U postgres 2>/dev/null ||
        pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -d postgres -U postgres 2>/dev/null
}

pg_psql() { # sql... run as superuser over the unix socket
    local psql="$PG_BIN/psql"
    [[ -x "$psql" ]] || psql="psql"
    pg_as_owner "$psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres "$@"
}

pg_bootstrap_db() {
    local out
    if ! out="$(pg_psql -tA <<EOF 2>&1
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD' CREATEDB;
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER'
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB') \gexec
EOF
    )"; then
        printf '%s\n' "$out" >&2
        show_log_tail "$PG_LOG"
        die "postgres: creating role/database $PG_USER/$PG_DB failed"
    fi
}

start_postgres() {
    if is_running postgres; then
        log "postgres: already running (PID $(read_pid postgres))"
        pg_find_bin || true
        wait_for postgres "$PG_TIMEOUT" "$PG_LOG" postgres pg_ready
        return 0
    fi
    rm -f "$(pidfile postgres)"
    pg_ensure_bin
    if port_open "$PG_PORT"; then
        die "postgres: port $PG_PORT on 127.0.0.1 is already in use by a process this script did not start (check: ss -ltnp | grep :$PG_PORT)"
    fi
    pg_prepare_dirs
    pg_initdb
    [[ -f "$PG_LOG" ]] && mv -f "$PG_LOG" "$PG_LOG.prev"
    # A postmaster.pid left by a killed server is fine: postgres checks whether that PID
    # is alive and reuses the file when it is not. pg_ctl puts the server in its own session.
    # After a SIGKILL, backends of the old server may hold the shared memory for a moment
    # (they exit once they notice the postmaster is gone): retry on those errors only.
    local attempt
    for attempt in 1 2 3 4 5; do
        if pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -s -w -t "$PG_TIMEOUT" start >"$LOGS/pg_ctl.log" 2>&1 9>&-; then
            break
        fi
        if ((attempt < 5)) && grep -qE 'lock file "postmaster.pid" already exists|shared memory block is still in use' "$PG_LOG" 2>/dev/null; then
            log "postgres: previous server not fully gone yet; retrying in 2s"
            sleep 2
            continue
        fi
        cat "$LOGS/pg_ctl.log" >&2 || true
        show_log_tail "$PG_LOG"
        die "postgres: pg_ctl start failed (see $PG_LOG)"
    done
    local pid
    pid="$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null | tr -dc '0-9')"
    [[ -n "$pid" ]] || die "postgres: started but $PG_DATA/postmaster.pid has no PID"
    echo "$pid" >"$(pidfile postgres)"
    wait_for postgres "$PG_TIMEOUT" "$PG_LOG" postgres pg_ready
    pg_bootstrap_db
    log "postgres: ready on 127.0.0.1:$PG_PORT (PID $pid), database $PG_DB"
}

# ---------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------
stop_component() { # component [--kill]
    local c="$1" kill="${2:-}" sig
    case "$c" in
        kafka | redis) sig=TERM ;;
        postgres) sig=INT ;; # "fast" shutdown; SIGTERM ("smart") waits for clients to leave
        *) die "unknown component '$c' (expected kafka, redis or postgres)" ;;
    esac
    [[ "$kill" == --kill ]] && sig=KILL
    [[ -z "$kill" || "$kill" == --kill ]] || die "unknown option '$kill' (only --kill)"
    stop_pid "$c" "$sig"
}

start_component() {
    ensure_dirs
    case "$1" in
        kafka) start_kafka ;;
        redis) start_redis ;;
        postgres) start_postgres ;;
        *) die "unknown component '$1' (expected kafka, redis or postgres)" ;;
    esac
}

cmd_up() {
    local t0
    t0=$(now)
    ensure_dirs
    ensure_gitignore
    # Kafka's JVM boots in the background while Postgres and Redis start.
    kafka_launch
    start_postgres
    start_redis
    kafka_wait
    log "all up in $(($(now) - t0))s"
    cmd_env
}

cmd_down() {
    local c rc=0
    for c in "${COMPONENTS[@]}"; do
        stop_component "$c" || rc=1
    done
    return $rc
}

cmd_status() {
    local c pid rc=0 port
    for c in "${COMPONENTS[@]}"; do
        case "$c" in kafka) port=$KAFKA_PORT ;; redis) port=$REDIS_PORT ;; postgres) port=$PG_PORT ;; esac
        pid="$(read_pid "$c")"
        if pid_matches "$c" "$pid"; then
            if port_open "$port"; then
                printf '%-9s running  pid=%s  127.0.0.1:%s\n' "$c" "$pid" "$port"
            else
                printf '%-9s running  pid=%s  127.0.0.1:%s (not accepting connections yet)\n' "$c" "$pid" "$port"
            fi
        else
            printf '%-9s stopped\n' "$c"
            rc=1
        fi
    done
    return $rc
}

cmd_clean() {
    local c
    for c in "${COMPONENTS[@]}"; do
        is_running "$c" && die "$c is running: run 'scripts/infra.sh down' first"
    done
    [[ -d "$INFRA" ]] || return 0
    rm -rf "$PG_ROOT" "$INFRA/redis" "$INFRA/kafka/data" "$INFRA/kafka/cluster.id" \
        "$INFRA/kafka/server.properties" "$LOGS" "$PIDS"
    log "removed data and logs under $INFRA (kept $KAFKA_LIBS)"
}

cmd_env() {
    cat <<EOF
export QUIZMESH_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
export QUIZMESH_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export QUIZMESH_POSTGRES_DSN=postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
EOF
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# One mutating command at a time (fd 9 holds the lock; servers are started with 9>&- so
# they never inherit it).
take_lock() {
    ensure_dirs
    command -v flock >/dev/null || return 0
    exec 9>"$INFRA/.lock"
    flock -w 600 9 || die "another scripts/infra.sh is still running (lock $INFRA/.lock)"
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        up) take_lock; cmd_up ;;
        down) take_lock; cmd_down ;;
        status) cmd_status ;;
        env) cmd_env ;;
        clean) take_lock; cmd_clean ;;
        start)
            [[ $# -eq 1 ]] || die "usage: $0 start kafka|redis|postgres"
            take_lock
            start_component "$1"
            ;;
        stop)
            [[ $# -ge 1 && $# -le 2 ]] || die "usage: $0 stop kafka|redis|postgres [--kill]"
            take_lock
            stop_component "$@"
            ;;
        kafka-cli)
            [[ $# -ge 1 ]] || die "usage: $0 kafka-cli CLASS [ARGS...]"
            ensure_dirs
            kafka_ensure_libs
            local cls="$1"
            shift
            exec java "${TOOLS_JOPTS[@]}" -cp "$KAFKA_LIBS/*" "$cls" "$@"
            ;;
        -h | --help | help) usage ;;
        *) usage ;;
    esac
}

main "$@"
