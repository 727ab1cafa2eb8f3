#!/usr/bin/env bash
# Local infrastructure for quizmesh, on 127.0.0.1, with data, logs and PID files under $REPO/.infra/.
# Two topologies, each started and stopped on its own (both may run at once; their ports differ):
#   single   (default) one Kafka broker (KRaft), one Redis, one PostgreSQL with PgBouncer in front of it
#            (pool_mode=transaction)
#   cluster  3 Kafka brokers (KRaft, combined mode; topics RF 3, min.insync.replicas 2, unclean
#            leader election off), a Redis Cluster of 3 primaries + 3 replicas, a separate Redis for
#            pub/sub, a PostgreSQL primary and a streaming replica; data under .infra/cluster/
#
# Usage (--topology single|cluster may stand anywhere; QUIZMESH_INFRA_TOPOLOGY sets the default;
# --secure, or QUIZMESH_INFRA_SECURE=1, chooses the secure profile the first time a data directory is
# brought up, which remembers it):
#   scripts/infra.sh up                 install what is missing, start all, wait until ready
#   scripts/infra.sh down               stop everything this script started (by PID file)
#   scripts/infra.sh status             print each component; exit 0 only if all are running
#   scripts/infra.sh env                print export lines for the services and the test suite
#   scripts/infra.sh start COMPONENT    start one component and wait until ready
#   scripts/infra.sh stop COMPONENT [--kill]
#                                       stop one (graceful, SIGKILL after a timeout);
#                                       --kill sends SIGKILL at once (fault tests)
#   scripts/infra.sh clean              delete data and logs (all must be stopped; the Kafka
#                                       jar cache in .infra/kafka/libs is kept)
#   scripts/infra.sh kafka-cli CLASS [ARGS...]
#                                       run a Kafka CLI class with the cached jars, e.g.
#                                       kafka-cli org.apache.kafka.tools.TopicCommand \
#                                         --bootstrap-server 127.0.0.1:19092 --list
# Components: single: kafka redis postgres pgbouncer; cluster: kafka1 kafka2 kafka3, redis1 .. redis6
# (the Redis Cluster), redis-pubsub, pg-primary, pg-replica.
#
# PostgreSQL has two roles, as a deployment should: quizmesh_migrator owns the database and its tables
# (`quizmesh migrate` connects as it: QUIZMESH_POSTGRES_MIGRATION_DSN), and quizmesh, the services'
# role, may only read and write rows (SELECT, INSERT, UPDATE, DELETE, granted by default privileges on
# whatever quizmesh_migrator creates). Both topologies; the replica copies them from the primary.
#
# The secure profile (single topology only) is what a deployment's credentials look like: Kafka listens
# on SASL_SSL only (SCRAM-SHA-512; users admin and quizmesh, created with `kafka-storage format
# --add-scram`), Redis on TLS only with its default user off and an ACL user quizmesh restricted to
# what the services need (scripts/redis/quizmesh.acl). The TLS certificates (a CA and a server
# certificate for 127.0.0.1/localhost, openssl) and random passwords are made once, into
# secrets/ of the data directory; `env` then prints the *_FILE variables that point at them.
# PostgreSQL and PgBouncer are the same in both profiles.
#
# Only processes whose PIDs are in the topology's pids/*.pid (and whose command line matches what
# this script launched) are ever signalled. Nothing is killed by name.
#
# Tunables (environment): INFRA_KAFKA_TIMEOUT (s, default 120; 240 for the cluster),
# INFRA_REDIS_TIMEOUT (20), INFRA_PG_TIMEOUT (60), INFRA_STOP_TIMEOUT (30), PG_BIN (PostgreSQL bin dir).
# QUIZMESH_INFRA_DIR (default $REPO/.infra) moves the data (fault tests run a private set there);
# the Kafka jar cache stays in $REPO/.infra/kafka/libs.
# Ports, single: QUIZMESH_INFRA_KAFKA_PORT (19092), QUIZMESH_INFRA_KAFKA_CONTROLLER_PORT (19093),
# QUIZMESH_INFRA_REDIS_PORT (16379), QUIZMESH_INFRA_PG_PORT (15432).
# Ports, cluster (comma lists where there are several): QUIZMESH_INFRA_CLUSTER_KAFKA_PORTS
# (19192,19193,19194), QUIZMESH_INFRA_CLUSTER_KAFKA_CONTROLLER_PORTS (19195,19196,19197),
# QUIZMESH_INFRA_CLUSTER_REDIS_PORTS (16400,...,16405), QUIZMESH_INFRA_CLUSTER_REDIS_PUBSUB_PORT (16410),
# QUIZMESH_INFRA_CLUSTER_PG_PORT (15442), QUIZMESH_INFRA_CLUSTER_PG_REPLICA_PORT (15443).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA="${QUIZMESH_INFRA_DIR:-$REPO/.infra}"
KAFKA_SRC="$REPO/scripts/kafka"

SINGLE_KAFKA_PORT="${QUIZMESH_INFRA_KAFKA_PORT:-19092}"
SINGLE_KAFKA_CONTROLLER_PORT="${QUIZMESH_INFRA_KAFKA_CONTROLLER_PORT:-19093}"
SINGLE_REDIS_PORT="${QUIZMESH_INFRA_REDIS_PORT:-16379}"
SINGLE_PG_PORT="${QUIZMESH_INFRA_PG_PORT:-15432}"
SINGLE_PGBOUNCER_PORT="${QUIZMESH_INFRA_PGBOUNCER_PORT:-15433}"
IFS=, read -r -a CLUSTER_KAFKA_PORTS <<<"${QUIZMESH_INFRA_CLUSTER_KAFKA_PORTS:-19192,19193,19194}"
IFS=, read -r -a CLUSTER_KAFKA_CONTROLLER_PORTS <<<"${QUIZMESH_INFRA_CLUSTER_KAFKA_CONTROLLER_PORTS:-19195,19196,19197}"
IFS=, read -r -a CLUSTER_REDIS_PORTS <<<"${QUIZMESH_INFRA_CLUSTER_REDIS_PORTS:-16400,16401,16402,16403,16404,16405}"
CLUSTER_REDIS_PUBSUB_PORT="${QUIZMESH_INFRA_CLUSTER_REDIS_PUBSUB_PORT:-16410}"
CLUSTER_PG_PORT="${QUIZMESH_INFRA_CLUSTER_PG_PORT:-15442}"
CLUSTER_PG_REPLICA_PORT="${QUIZMESH_INFRA_CLUSTER_PG_REPLICA_PORT:-15443}"
PG_DB=quizmesh
PG_USER=quizmesh
PG_PASSWORD=quizmesh
PG_MIGRATOR=quizmesh_migrator
PG_MIGRATOR_PASSWORD=quizmesh_migrator
KAFKA_PARTITIONS=8
KAFKA_TOPICS=(user_joined_quiz answer_submitted leaderboard_updated user_left_quiz)

REDIS_TIMEOUT="${INFRA_REDIS_TIMEOUT:-20}"
PG_TIMEOUT="${INFRA_PG_TIMEOUT:-60}"
STOP_TIMEOUT="${INFRA_STOP_TIMEOUT:-30}"

# Set by use_topology: where this topology keeps its state, and its components.
TOPOLOGY=""
# Set by use_profile: plain or secure; secure keeps its certificates and passwords in $SECRETS.
PROFILE=plain SECRETS=""
STATE="" PIDS="" LOGS="" KAFKA_TIMEOUT=""
COMPONENTS=() KAFKA_NODES=() REDIS_CLUSTER_NODES=()

use_topology() { # single|cluster
    TOPOLOGY="$1"
    case "$1" in
        single)
            STATE="$INFRA"
            COMPONENTS=(kafka redis postgres pgbouncer)
            KAFKA_NODES=(kafka)
            REDIS_CLUSTER_NODES=()
            KAFKA_TIMEOUT="${INFRA_KAFKA_TIMEOUT:-120}"
            ;;
        cluster)
            ((${#CLUSTER_KAFKA_PORTS[@]} == 3 && ${#CLUSTER_KAFKA_CONTROLLER_PORTS[@]} == 3)) \
                || die "QUIZMESH_INFRA_CLUSTER_KAFKA_PORTS and ..._KAFKA_CONTROLLER_PORTS must list 3 ports each"
            ((${#CLUSTER_REDIS_PORTS[@]} == 6)) || die "QUIZMESH_INFRA_CLUSTER_REDIS_PORTS must list 6 ports"
            STATE="$INFRA/cluster"
            KAFKA_NODES=(kafka1 kafka2 kafka3)
            REDIS_CLUSTER_NODES=(redis1 redis2 redis3 redis4 redis5 redis6)
            COMPONENTS=("${KAFKA_NODES[@]}" "${REDIS_CLUSTER_NODES[@]}" redis-pubsub pg-primary pg-replica)
            # Three JVMs boot side by side on a shared machine.
            KAFKA_TIMEOUT="${INFRA_KAFKA_TIMEOUT:-240}"
            ;;
        *) die "unknown topology '$1' (expected single or cluster)" ;;
    esac
    PIDS="$STATE/pids"
    LOGS="$STATE/logs"
}

# The profile a data directory was first brought up with is kept in it ($STATE/profile): its Kafka users
# are made when the broker's storage is formatted, once. A directory from before profiles existed holds
# a formatted broker, so it is plain.
use_profile() { # requested: yes (--secure) or empty
    local requested="$1" stored=""
    SECRETS="$STATE/secrets"
    if [[ -f "$STATE/profile" ]]; then
        stored="$(cat "$STATE/profile")"
    elif [[ -f "$STATE/kafka/data/meta.properties" ]]; then
        stored=plain
    fi
    if [[ "$requested" == yes && "$stored" == plain ]]; then
        die "$STATE was set up without --secure: run 'scripts/infra.sh down' and 'scripts/infra.sh clean' first, or give the secure profile its own QUIZMESH_INFRA_DIR"
    fi
    PROFILE="${stored:-plain}"
    [[ -n "$stored" || "$requested" != yes ]] || PROFILE=secure
    if [[ "$PROFILE" == secure && "$TOPOLOGY" != single ]]; then
        die "the secure profile exists for the single topology only"
    fi
}

secret_file() { # name -> the file holding that password, made (random) on first use
    local f="$SECRETS/$1.password"
    if [[ ! -s "$f" ]]; then
        mkdir -p "$SECRETS"
        chmod 700 "$SECRETS"
        (umask 077 && openssl rand -hex 24 >"$f")
    fi
    echo "$f"
}

secret() { tr -d '[:space:]' <"$(secret_file "$1")"; }

# A CA, and a certificate it signed for 127.0.0.1 and localhost that Kafka and Redis both serve.
tls_ensure() {
    [[ -s "$SECRETS/ca.pem" && -s "$SECRETS/server.pem" ]] && return 0
    command -v openssl >/dev/null || apt_install openssl
    mkdir -p "$SECRETS"
    chmod 700 "$SECRETS"
    log "secure profile: making a test CA and a server certificate in $SECRETS"
    (
        cd "$SECRETS"
        umask 077
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=quizmesh local test CA" \
            -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
        cat >server.ext <<EOF
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile server.ext -out server.crt
        # Kafka's PEM keystore: the (unencrypted PKCS#8) key and its certificate in one file.
        cat server.key server.crt >server.pem
        chmod 644 ca.pem
    ) >"$LOGS/openssl.log" 2>&1 || { show_log_tail "$LOGS/openssl.log"; die "secure profile: openssl failed"; }
}

# Points the per-component globals (ports, directories, logs, roles) at one component, so that the
# functions below serve every instance of a kind. Every entry point that names a component calls it.
select_component() { # name
    local c="$1" i
    case "$c" in
        kafka)
            KAFKA_NODE_ID=1 KAFKA_PORT="$SINGLE_KAFKA_PORT" KAFKA_CONTROLLER_PORT="$SINGLE_KAFKA_CONTROLLER_PORT"
            KAFKA_VOTERS="1@127.0.0.1:$SINGLE_KAFKA_CONTROLLER_PORT" KAFKA_REPLICAS=1 KAFKA_MIN_ISR=1
            KAFKA_DIR="$STATE/kafka" KAFKA_LOG="$LOGS/kafka.log" KAFKA_CONF="$STATE/kafka/server.properties"
            ;;
        kafka[1-3])
            i="${c#kafka}"
            KAFKA_NODE_ID="$i" KAFKA_PORT="${CLUSTER_KAFKA_PORTS[i - 1]}"
            KAFKA_CONTROLLER_PORT="${CLUSTER_KAFKA_CONTROLLER_PORTS[i - 1]}"
            KAFKA_VOTERS="1@127.0.0.1:${CLUSTER_KAFKA_CONTROLLER_PORTS[0]},2@127.0.0.1:${CLUSTER_KAFKA_CONTROLLER_PORTS[1]},3@127.0.0.1:${CLUSTER_KAFKA_CONTROLLER_PORTS[2]}"
            KAFKA_REPLICAS=3 KAFKA_MIN_ISR=2
            KAFKA_DIR="$STATE/$c" KAFKA_LOG="$LOGS/$c.log" KAFKA_CONF="$STATE/$c/server.properties"
            ;;
        redis)
            REDIS_PORT="$SINGLE_REDIS_PORT" REDIS_DIR="$STATE/redis" REDIS_LOG="$LOGS/redis.log" REDIS_IN_CLUSTER=no
            ;;
        redis[1-6])
            i="${c#redis}"
            REDIS_PORT="${CLUSTER_REDIS_PORTS[i - 1]}" REDIS_DIR="$STATE/$c" REDIS_LOG="$LOGS/$c.log" REDIS_IN_CLUSTER=yes
            ;;
        redis-pubsub)
            REDIS_PORT="$CLUSTER_REDIS_PUBSUB_PORT" REDIS_DIR="$STATE/$c" REDIS_LOG="$LOGS/$c.log" REDIS_IN_CLUSTER=no
            ;;
        postgres) pg_select "$STATE/pg" "$SINGLE_PG_PORT" single ;;
        pgbouncer)
            # Beside the PostgreSQL it fronts, in the tree its owner (user postgres, as root) may write.
            pg_select "$STATE/pg" "$SINGLE_PG_PORT" single
            PGB_PORT="$SINGLE_PGBOUNCER_PORT" PGB_DIR="$PG_ROOT/pgbouncer"
            PGB_CONF="$PG_ROOT/pgbouncer/pgbouncer.ini" PGB_LOG="$PG_ROOT/pgbouncer/pgbouncer.log"
            ;;
        pg-primary) pg_select "$STATE/$c" "$CLUSTER_PG_PORT" primary ;;
        pg-replica) pg_select "$STATE/$c" "$CLUSTER_PG_REPLICA_PORT" replica ;;
        *) die "unknown component '$c' for the $TOPOLOGY topology (expected one of: ${COMPONENTS[*]})" ;;
    esac
    local known
    for known in "${COMPONENTS[@]}"; do [[ "$known" == "$c" ]] && return 0; done
    die "component '$c' belongs to the other topology (this one, $TOPOLOGY, has: ${COMPONENTS[*]})"
}

component_port() { # name -> the port clients use
    select_component "$1"
    case "$1" in kafka*) echo "$KAFKA_PORT" ;; redis*) echo "$REDIS_PORT" ;; pgbouncer) echo "$PGB_PORT" ;; *) echo "$PG_PORT" ;; esac
}

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
    select_component "$c"
    cmd="$(cmdline_of "$pid")"
    case "$c" in
        kafka*) [[ "$cmd" == *kafka.Kafka* && "$cmd" == *"$KAFKA_CONF"* ]] ;;
        redis*) [[ "$cmd" == *redis-server*":$REDIS_PORT"* ]] ;;
        pgbouncer) [[ "$cmd" == *pgbouncer* && "$cmd" == *"$PGB_CONF"* ]] ;;
        *) [[ "$cmd" == *postgres* && "$cmd" == *"$PG_DATA"* ]] ;;
    esac
}

is_running() { # component -> 0 if its PID file names a live process we launched
    local pid
    pid="$(read_pid "$1")"
    pid_matches "$1" "$pid"
}

ensure_dirs() {
    mkdir -p "$INFRA" "$STATE" "$PIDS" "$LOGS"
    chmod 755 "$INFRA" "$STATE"
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

# 0 when the component runs already (once it answers `ready`); otherwise clears its stale PID file, 1.
running_already() { # component timeout logfile ready-command...
    local c="$1" timeout="$2" logf="$3"
    shift 3
    if is_running "$c"; then
        log "$c: already running (PID $(read_pid "$c"))"
        wait_for "$c" "$timeout" "$logf" "$c" "$@"
        return 0
    fi
    rm -f "$(pidfile "$c")"
    return 1
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
KAFKA_LIBS="$REPO/.infra/kafka/libs"
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
    local listener=PLAINTEXT
    [[ "$PROFILE" == secure ]] && listener=SASL_SSL
    : >"$KAFKA_CONF"
    chmod 600 "$KAFKA_CONF" # the secure profile writes the broker's own password into it
    cat >"$KAFKA_CONF" <<EOF
# Generated by scripts/infra.sh -- edits are overwritten on every start.
process.roles=broker,controller
node.id=$KAFKA_NODE_ID
controller.quorum.voters=$KAFKA_VOTERS
listeners=$listener://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=$listener://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=$listener
listener.security.protocol.map=CONTROLLER:PLAINTEXT,$listener:$listener
log.dirs=$KAFKA_DIR/data
num.partitions=$KAFKA_PARTITIONS
default.replication.factor=$KAFKA_REPLICAS
auto.create.topics.enable=true
offsets.topic.replication.factor=$KAFKA_REPLICAS
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$KAFKA_REPLICAS
transaction.state.log.min.isr=$KAFKA_MIN_ISR
transaction.state.log.num.partitions=8
# With 3 replicas, acks=all waits for 2 in-sync copies: one broker may fail without losing an
# acknowledged write, and a replica that fell behind never becomes leader (that would lose writes).
min.insync.replicas=$KAFKA_MIN_ISR
unclean.leader.election.enable=false
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
    [[ "$PROFILE" == secure ]] || return 0
    # Clients and the broker itself authenticate with SCRAM over TLS. The controller listener stays on
    # loopback in plaintext: KRaft controllers cannot use SCRAM (its credentials live in the metadata
    # they serve).
    cat >>"$KAFKA_CONF" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(secret kafka-admin)";
ssl.keystore.type=PEM
ssl.keystore.location=$SECRETS/server.pem
ssl.truststore.type=PEM
ssl.truststore.location=$SECRETS/ca.pem
ssl.client.auth=none
EOF
    (umask 077 && cat >"$SECRETS/kafka-admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(secret kafka-admin)";
ssl.truststore.type=PEM
ssl.truststore.location=$SECRETS/ca.pem
EOF
    )
}

kafka_cluster_id() { # the ID every node of this topology is formatted with, made once
    local f="$STATE/kafka-cluster.id"
    [[ "$TOPOLOGY" == single ]] && f="$STATE/kafka/cluster.id"
    if [[ ! -s "$f" ]]; then
        mkdir -p "$(dirname "$f")"
        java "${TOOLS_JOPTS[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid >"$f.tmp" 2>>"$LOGS/kafka-storage.log" \
            || { show_log_tail "$LOGS/kafka-storage.log"; die "kafka: StorageTool random-uuid failed"; }
        tr -d '[:space:]' <"$f.tmp" >"$f"
        rm -f "$f.tmp"
    fi
    cat "$f"
}

kafka_launch() { # component: start the JVM without waiting
    local c="$1"
    if is_running "$c"; then
        log "$c: already running (PID $(read_pid "$c"))"
        return 0
    fi
    select_component "$c"
    rm -f "$(pidfile "$c")"
    if port_open "$KAFKA_PORT" || port_open "$KAFKA_CONTROLLER_PORT"; then
        die "$c: port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT on 127.0.0.1 is already in use by a process this script did not start (check: ss -ltnp | grep -E ':($KAFKA_PORT|$KAFKA_CONTROLLER_PORT)')"
    fi
    kafka_ensure_libs
    [[ "$PROFILE" == plain ]] || tls_ensure
    kafka_write_config
    local cp="$KAFKA_LIBS/*" cluster_id scram=()
    cluster_id="$(kafka_cluster_id)"
    if [[ "$PROFILE" == secure ]]; then
        # SCRAM users exist before the broker first starts: it authenticates to itself as admin.
        scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$(secret kafka-admin)]"
            --add-scram "SCRAM-SHA-512=[name=quizmesh,password=$(secret kafka-quizmesh)]")
    fi
    # -g: already formatted directories are left alone, so this is safe on every start.
    java "${TOOLS_JOPTS[@]}" -cp "$cp" kafka.tools.StorageTool format -g -t "$cluster_id" \
        -c "$KAFKA_CONF" "${scram[@]+"${scram[@]}"}" >>"$LOGS/kafka-storage.log" 2>&1 \
        || { show_log_tail "$LOGS/kafka-storage.log"; die "$c: formatting $KAFKA_DIR/data failed (if the cluster id changed, delete $KAFKA_DIR/data)"; }

    [[ -f "$KAFKA_LOG" ]] && mv -f "$KAFKA_LOG" "$KAFKA_LOG.prev"
    local heap=-Xmx512m
    [[ "$TOPOLOGY" == cluster ]] && heap=-Xmx384m
    local jopts=(-Xms256m "$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
        -Djava.awt.headless=true "-Dkafka.logs.dir=$LOGS"
        "-Dlog4j.configuration=file:$KAFKA_SRC/log4j.properties")
    # New session (setsid) so signals to the caller's process group do not reach it; the
    # inner shell records its own PID and then becomes the JVM (exec), so the PID is exact.
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$(pidfile "$c")" \
        java "${jopts[@]}" -cp "$cp" kafka.Kafka "$KAFKA_CONF" \
        </dev/null >"$KAFKA_LOG" 2>&1 9>&- &
    local deadline=$(($(now) + 5))
    while [[ ! -s "$(pidfile "$c")" ]] && (($(now) < deadline)); do sleep 0.1; done
    [[ -s "$(pidfile "$c")" ]] || die "$c: launcher did not write $(pidfile "$c")"
    log "$c: launched (PID $(read_pid "$c")), log $KAFKA_LOG"
}

kafka_started() { # component
    select_component "$1"
    grep -q 'Kafka Server started' "$KAFKA_LOG" 2>/dev/null && port_open "$KAFKA_PORT"
}

kafka_bootstrap() { # every broker of the topology, comma-separated
    local c out=()
    for c in "${KAFKA_NODES[@]}"; do out+=("127.0.0.1:$(component_port "$c")"); done
    (IFS=,; echo "${out[*]}")
}

kafka_topics() { # args for TopicCommand
    local secure=()
    [[ "$PROFILE" == plain ]] || secure=(--command-config "$SECRETS/kafka-admin.properties")
    java "${TOOLS_JOPTS[@]}" -cp "$KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$(kafka_bootstrap)" "${secure[@]+"${secure[@]}"}" "$@"
}

kafka_create_topics() {
    local existing missing=() t out replicas=1 min_isr=1
    if [[ "$TOPOLOGY" == cluster ]]; then replicas=3 min_isr=2; fi
    if ! existing="$(kafka_topics --list 2>>"$LOGS/kafka-topics.log")"; then
        show_log_tail "$LOGS/kafka-topics.log"
        for t in "${KAFKA_NODES[@]}"; do select_component "$t"; show_log_tail "$KAFKA_LOG" 20; done
        die "kafka: listing topics failed (see $LOGS/kafka-topics.log)"
    fi
    for t in "${KAFKA_TOPICS[@]}"; do
        grep -qxF "$t" <<<"$existing" || missing+=("$t")
    done
    for t in "${missing[@]+"${missing[@]}"}"; do
        if ! out="$(kafka_topics --create --if-not-exists --topic "$t" --partitions "$KAFKA_PARTITIONS" \
            --replication-factor "$replicas" --config "min.insync.replicas=$min_isr" 2>&1)"; then
            printf '%s\n' "$out" >>"$LOGS/kafka-topics.log"
            show_log_tail "$LOGS/kafka-topics.log"
            die "kafka: creating topic $t failed"
        fi
        log "kafka: created topic $t ($KAFKA_PARTITIONS partitions, replication factor $replicas)"
    done
}

kafka_wait() { # waits for every broker of the topology, then makes the topics
    local t0 c
    t0=$(now)
    for c in "${KAFKA_NODES[@]}"; do
        select_component "$c"
        wait_for "$c" "$KAFKA_TIMEOUT" "$KAFKA_LOG" "$c" kafka_started "$c"
    done
    kafka_create_topics
    log "kafka: ready on $(kafka_bootstrap) (waited $(($(now) - t0))s)"
}

start_kafka() { # component
    kafka_launch "$1" # says so and does nothing when it is already running
    select_component "$1"
    wait_for "$1" "$KAFKA_TIMEOUT" "$KAFKA_LOG" "$1" kafka_started "$1"
    # Topics are checked once every broker runs (a broker restarted alone needs nothing more).
    local c
    for c in "${KAFKA_NODES[@]}"; do is_running "$c" || return 0; done
    kafka_create_topics
}

# ---------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------
redis_cli() {
    if [[ "$PROFILE" == secure ]]; then
        REDISCLI_AUTH="$(secret redis-admin)" redis-cli --tls --cacert "$SECRETS/ca.pem" --user admin \
            -h 127.0.0.1 -p "$REDIS_PORT" "$@"
    else
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"
    fi
}

# The secure profile's Redis: TLS only, the default user off, an admin for this script and the tests,
# and the services' user with scripts/redis/quizmesh.acl's rules. In a file (mode 600), not on the
# command line, which every local user may read.
redis_secure_config() { # -> the file
    local f="$REDIS_DIR/secure.conf" rules
    rules="$(grep -v '^#' "$REPO/scripts/redis/quizmesh.acl" | tr '\n' ' ')"
    (umask 077 && cat >"$f" <<EOF
port 0
tls-port $REDIS_PORT
tls-cert-file $SECRETS/server.crt
tls-key-file $SECRETS/server.key
tls-ca-cert-file $SECRETS/ca.pem
tls-auth-clients no
user default off
user admin on >$(secret redis-admin) ~* &* +@all
user quizmesh on >$(secret redis-quizmesh) $rules
EOF
    )
    echo "$f"
}
redis_ping() { [[ "$(redis_cli ping 2>/dev/null)" == PONG ]]; }

start_redis() { # component
    local c="$1"
    select_component "$c"
    running_already "$c" "$REDIS_TIMEOUT" "$REDIS_LOG" redis_ping && return 0
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        apt_install redis-server redis-tools
    fi
    if port_open "$REDIS_PORT"; then
        die "$c: port $REDIS_PORT on 127.0.0.1 is already in use by a process this script did not start (check: ss -ltnp | grep :$REDIS_PORT)"
    fi
    mkdir -p "$REDIS_DIR"
    [[ -f "$REDIS_LOG" ]] && mv -f "$REDIS_LOG" "$REDIS_LOG.prev"
    local cluster_args=()
    if [[ "$REDIS_IN_CLUSTER" == yes ]]; then
        # nodes.conf (in --dir) keeps the node's identity and the cluster's layout across restarts.
        # A primary counts as failed after 2 s, and then its replica takes over. Without full
        # coverage required, the other shards keep serving while one shard fails over.
        cluster_args=(--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000
            --cluster-require-full-coverage no)
    fi
    local profile_args=(--port "$REDIS_PORT")
    if [[ "$PROFILE" == secure ]]; then
        tls_ensure
        profile_args=("$(redis_secure_config)")
    fi
    # daemonize: redis double-forks, calls setsid and writes the PID file itself.
    redis-server "${profile_args[@]}" --bind 127.0.0.1 --protected-mode yes \
        --daemonize yes --pidfile "$(pidfile "$c")" --logfile "$REDIS_LOG" \
        --dir "$REDIS_DIR" --appendonly no --save '' "${cluster_args[@]+"${cluster_args[@]}"}" 9>&- \
        || { show_log_tail "$REDIS_LOG"; die "$c: redis-server failed to start"; }
    local deadline=$(($(now) + 5))
    while [[ ! -s "$(pidfile "$c")" ]] && (($(now) < deadline)); do sleep 0.1; done
    [[ -s "$(pidfile "$c")" ]] || { show_log_tail "$REDIS_LOG"; die "$c: no PID file written"; }
    wait_for "$c" "$REDIS_TIMEOUT" "$REDIS_LOG" "$c" redis_ping
    log "$c: ready on 127.0.0.1:$REDIS_PORT (PID $(read_pid "$c"))"
}

redis_cluster_field() { # component field -> the field's value in CLUSTER INFO
    select_component "$1"
    redis_cli cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

redis_cluster_ok() { # 0 when every node sees the whole cluster and every slot served
    local c
    for c in "${REDIS_CLUSTER_NODES[@]}"; do
        [[ "$(redis_cluster_field "$c" cluster_state)" == ok ]] || return 1
        [[ "$(redis_cluster_field "$c" cluster_known_nodes)" == "${#REDIS_CLUSTER_NODES[@]}" ]] || return 1
        [[ "$(redis_cluster_field "$c" cluster_slots_ok)" == 16384 ]] || return 1
    done
}

# Joins the six nodes into one cluster (3 primaries, each with a replica) unless they already are
# one: nodes restarted from their nodes.conf find each other again by themselves.
redis_cluster_form() {
    local c known nodes=()
    for c in "${REDIS_CLUSTER_NODES[@]}"; do
        known="$(redis_cluster_field "$c" cluster_known_nodes)"
        nodes+=("127.0.0.1:$(component_port "$c")")
        if [[ "$known" != 1 ]]; then
            wait_for "redis cluster" "$REDIS_TIMEOUT" "$LOGS/redis1.log" "" redis_cluster_ok
            log "redis cluster: ok on ${nodes[0]} and its peers"
            return 0
        fi
    done
    log "redis cluster: creating it from ${nodes[*]}"
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$LOGS/redis-cluster-create.log" 2>&1 \
        || { show_log_tail "$LOGS/redis-cluster-create.log"; die "redis cluster: 'redis-cli --cluster create' failed"; }
    wait_for "redis cluster" "$REDIS_TIMEOUT" "$LOGS/redis-cluster-create.log" "" redis_cluster_ok
    log "redis cluster: ok, 3 primaries with a replica each"
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

PG_REACHABLE="" # cached: can user postgres traverse into $INFRA?

pg_select() { # root port role(single|primary|replica): points PG_* at one server
    PG_ROOT="$1" PG_PORT="$2" PG_ROLE="$3"
    if [[ $EUID -eq 0 ]] && id postgres >/dev/null 2>&1; then
        if [[ -z "$PG_REACHABLE" ]]; then
            PG_REACHABLE=yes
            postgres_can_reach "$INFRA" || PG_REACHABLE=no
        fi
        if [[ "$PG_REACHABLE" == no ]]; then
            local key="$INFRA"
            [[ "$PG_ROLE" == single ]] || key="$PG_ROOT"
            PG_ROOT="/tmp/quizmesh-pg-$(printf '%s' "$key" | sha256sum | cut -c1-16)"
        fi
    fi
    PG_DATA="$PG_ROOT/data"
    PG_SOCK="$PG_ROOT/run"
    PG_LOG="$PG_ROOT/log/postgres.log" # inside the postgres-owned tree so the server can write it
}

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

pg_new_data_dir() {
    rm -rf "$PG_DATA"
    mkdir -p "$PG_DATA"
    [[ $EUID -eq 0 ]] && chown postgres:postgres "$PG_DATA"
    chmod 700 "$PG_DATA"
}

pg_initdb() {
    [[ -s "$PG_DATA/PG_VERSION" ]] && return 0
    log "postgres: initdb into $PG_DATA"
    pg_new_data_dir
    pg_as_owner "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=trust --no-sync >"$LOGS/pg-initdb.log" 2>&1 \
        || { show_log_tail "$LOGS/pg-initdb.log"; rm -rf "$PG_DATA"; die "postgres: initdb failed"; }
    # Loopback only, trust auth (tests; password 'quizmesh' is accepted but not checked).
    pg_as_owner tee "$PG_DATA/pg_hba.conf" >/dev/null <<EOF
# Generated by scripts/infra.sh: test-only, loopback-only, trust.
local   all all                trust
host    all all 127.0.0.1/32   trust
host    replication all 127.0.0.1/32 trust
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
    if [[ "$PG_ROLE" == primary ]]; then
        # A streaming replica copies this server (pg_basebackup), which needs full pages in the WAL; the
        # WAL kept lets a replica that was stopped for a while catch up without a new copy.
        pg_as_owner tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF
full_page_writes = on
wal_level = replica
max_wal_senders = 10
wal_keep_size = '1GB'
EOF
    fi
}

# The replica's data directory: a copy of the primary that streams its WAL from then on.
pg_basebackup_replica() {
    [[ -s "$PG_DATA/PG_VERSION" ]] && return 0
    local primary_port="$CLUSTER_PG_PORT"
    log "postgres: copying the primary (127.0.0.1:$primary_port) into $PG_DATA with pg_basebackup"
    pg_new_data_dir
    # -R writes standby.signal and primary_conninfo; -X stream takes the WAL the copy needs along.
    pg_as_owner "$PG_BIN/pg_basebackup" -D "$PG_DATA" -R -X stream -c fast -h 127.0.0.1 -p "$primary_port" \
        -U postgres >"$LOGS/pg-basebackup.log" 2>&1 \
        || { show_log_tail "$LOGS/pg-basebackup.log"; rm -rf "$PG_DATA"; die "postgres: pg_basebackup from the primary failed"; }
    # The copy carries the primary's settings; this server's own come last, and the last one wins.
    pg_as_owner tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF

# ---- scripts/infra.sh (the streaming replica) ----
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
hot_standby = on
hot_standby_feedback = on
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

# The database, owned by the migration role, and the services' role with row access only. Idempotent;
# a database made before the two roles were split (the services' role owned it and its tables) is handed
# over to the migration role.
pg_bootstrap_db() {
    local out
    if ! out="$(pg_psql -tA <<EOF 2>&1
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_MIGRATOR') THEN
    CREATE ROLE $PG_MIGRATOR LOGIN PASSWORD '$PG_MIGRATOR_PASSWORD' CREATEDB;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
ALTER ROLE $PG_USER NOCREATEDB;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_MIGRATOR'
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB') \gexec
ALTER DATABASE $PG_DB OWNER TO $PG_MIGRATOR;
\connect $PG_DB
DO \$\$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_class WHERE relowner = '$PG_USER'::regrole) THEN
    REASSIGN OWNED BY $PG_USER TO $PG_MIGRATOR;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO $PG_USER;
  END IF;
END \$\$;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO $PG_USER;
ALTER DEFAULT PRIVILEGES FOR ROLE $PG_MIGRATOR IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO $PG_USER;
ALTER DEFAULT PRIVILEGES FOR ROLE $PG_MIGRATOR IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO $PG_USER;
EOF
    )"; then
        printf '%s\n' "$out" >&2
        show_log_tail "$PG_LOG"
        die "postgres: creating roles $PG_MIGRATOR, $PG_USER and database $PG_DB failed"
    fi
}

start_postgres() { # component
    local c="$1"
    select_component "$c"
    if is_running "$c"; then
        log "$c: already running (PID $(read_pid "$c"))"
        pg_find_bin || true
        wait_for "$c" "$PG_TIMEOUT" "$PG_LOG" "$c" pg_ready
        return 0
    fi
    rm -f "$(pidfile "$c")"
    pg_ensure_bin
    if port_open "$PG_PORT"; then
        die "$c: port $PG_PORT on 127.0.0.1 is already in use by a process this script did not start (check: ss -ltnp | grep :$PG_PORT)"
    fi
    pg_prepare_dirs
    if [[ "$PG_ROLE" == replica ]]; then
        pg_basebackup_replica
    else
        pg_initdb
    fi
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
            log "$c: previous server not fully gone yet; retrying in 2s"
            sleep 2
            continue
        fi
        cat "$LOGS/pg_ctl.log" >&2 || true
        show_log_tail "$PG_LOG"
        die "$c: pg_ctl start failed (see $PG_LOG)"
    done
    local pid
    pid="$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null | tr -dc '0-9')"
    [[ -n "$pid" ]] || die "$c: started but $PG_DATA/postmaster.pid has no PID"
    echo "$pid" >"$(pidfile "$c")"
    wait_for "$c" "$PG_TIMEOUT" "$PG_LOG" "$c" pg_ready
    # A replica has the primary's role and database already (and could not create them: it is read-only).
    [[ "$PG_ROLE" == replica ]] || pg_bootstrap_db
    log "$c: ready on 127.0.0.1:$PG_PORT (PID $pid), database $PG_DB"
}

# ---------------------------------------------------------------------------------------
# PgBouncer (transaction pooling in front of the single-node PostgreSQL)
# ---------------------------------------------------------------------------------------
pgbouncer_ready() {
    "${PG_BIN:-/nonexistent}/pg_isready" -q -h 127.0.0.1 -p "$PGB_PORT" -d "$PG_DB" -U "$PG_USER" 2>/dev/null ||
        pg_isready -q -h 127.0.0.1 -p "$PGB_PORT" -d "$PG_DB" -U "$PG_USER" 2>/dev/null
}

pgbouncer_write_config() {
    pg_as_owner mkdir -p "$PGB_DIR"
    # Clients authenticate to PgBouncer with SCRAM against these passwords; PgBouncer logs in to
    # PostgreSQL as the same role (loopback trust here).
    pg_as_owner tee "$PGB_DIR/userlist.txt" >/dev/null <<EOF
"$PG_USER" "$PG_PASSWORD"
"$PG_MIGRATOR" "$PG_MIGRATOR_PASSWORD"
EOF
    pg_as_owner chmod 600 "$PGB_DIR/userlist.txt"
    pg_as_owner tee "$PGB_CONF" >/dev/null <<EOF
; Generated by scripts/infra.sh -- edits are overwritten on every start.
[databases]
$PG_DB = host=127.0.0.1 port=$PG_PORT dbname=$PG_DB

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $PGB_DIR/userlist.txt
; A server connection serves one client transaction at a time, then the next client's: what the
; capacity plan counts on, and why asyncpg's statement cache must be off behind it.
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
; SHOW STATS and the like on the admin console (database pgbouncer), for the tests.
stats_users = $PG_USER
logfile = $PGB_LOG
pidfile = $PGB_DIR/pgbouncer.pid
EOF
}

start_pgbouncer() { # component
    local c="$1"
    select_component "$c"
    running_already "$c" "$PG_TIMEOUT" "$PGB_LOG" pgbouncer_ready && return 0
    command -v pgbouncer >/dev/null || apt_install pgbouncer
    if port_open "$PGB_PORT"; then
        die "$c: port $PGB_PORT on 127.0.0.1 is already in use by a process this script did not start (check: ss -ltnp | grep :$PGB_PORT)"
    fi
    pgbouncer_write_config
    [[ -f "$PGB_LOG" ]] && pg_as_owner mv -f "$PGB_LOG" "$PGB_LOG.prev"
    # -d: PgBouncer daemonizes and writes its PID file; it refuses to run as root, hence its tree's owner.
    pg_as_owner pgbouncer -d -q "$PGB_CONF" 9>&- || { show_log_tail "$PGB_LOG"; die "$c: pgbouncer failed to start"; }
    local deadline=$(($(now) + 5))
    while [[ ! -s "$PGB_DIR/pgbouncer.pid" ]] && (($(now) < deadline)); do sleep 0.1; done
    [[ -s "$PGB_DIR/pgbouncer.pid" ]] || { show_log_tail "$PGB_LOG"; die "$c: no PID file written"; }
    head -n1 "$PGB_DIR/pgbouncer.pid" | tr -dc '0-9' >"$(pidfile "$c")"
    wait_for "$c" "$PG_TIMEOUT" "$PGB_LOG" "$c" pgbouncer_ready
    log "$c: ready on 127.0.0.1:$PGB_PORT (PID $(read_pid "$c")), pool_mode=transaction in front of 127.0.0.1:$PG_PORT"
}

# ---------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------
stop_component() { # component [--kill]
    local c="$1" kill="${2:-}" sig
    select_component "$c"
    case "$c" in
        kafka* | redis*) sig=TERM ;;
        # postgres' "fast" shutdown (its SIGTERM, "smart", waits for clients to leave); PgBouncer's safe
        # one (the transactions in progress finish).
        *) sig=INT ;;
    esac
    [[ "$kill" == --kill ]] && sig=KILL
    [[ -z "$kill" || "$kill" == --kill ]] || die "unknown option '$kill' (only --kill)"
    stop_pid "$c" "$sig"
}

start_component() {
    ensure_dirs
    select_component "$1"
    case "$1" in
        kafka*) start_kafka "$1" ;;
        redis*)
            start_redis "$1"
            # A cluster node restarted alone rejoins from its nodes.conf.
            [[ "$REDIS_IN_CLUSTER" == no ]] || wait_for "redis cluster" "$REDIS_TIMEOUT" "$REDIS_LOG" "" redis_cluster_ok
            ;;
        pgbouncer) start_pgbouncer "$1" ;;
        *) start_postgres "$1" ;;
    esac
}

ensure_haproxy() { # edges sit behind HAProxy in the cluster topology and in replicated deployments on either
    command -v haproxy >/dev/null || apt_install haproxy
}

cmd_up() {
    local t0 c
    t0=$(now)
    ensure_dirs
    ensure_gitignore
    echo "$PROFILE" >"$STATE/profile"
    # Kafka's JVMs boot in the background while PostgreSQL and Redis start.
    for c in "${KAFKA_NODES[@]}"; do kafka_launch "$c"; done
    if [[ "$TOPOLOGY" == single ]]; then
        start_postgres postgres
        start_pgbouncer pgbouncer
        start_redis redis
    else
        start_postgres pg-primary
        start_postgres pg-replica
        for c in "${REDIS_CLUSTER_NODES[@]}" redis-pubsub; do start_redis "$c"; done
        redis_cluster_form
    fi
    # Both topologies' tests put edges behind it (the replicated deployment of bench.pipeline, too).
    ensure_haproxy
    kafka_wait
    log "all up in $(($(now) - t0))s"
    cmd_env
}

cmd_down() {
    local c rc=0 stoppers=()
    # Brokers stop together: the last of several KRaft nodes stopped one by one has no quorum left to
    # hand its partitions over to and waits out its shutdown timeout.
    for c in "${KAFKA_NODES[@]}"; do
        stop_component "$c" &
        stoppers+=($!)
    done
    for c in "${COMPONENTS[@]}"; do
        [[ "$c" == kafka* ]] && continue
        stop_component "$c" || rc=1
    done
    for c in "${stoppers[@]}"; do wait "$c" || rc=1; done
    return $rc
}

cmd_status() {
    local c pid rc=0 port
    for c in "${COMPONENTS[@]}"; do
        port="$(component_port "$c")"
        pid="$(read_pid "$c")"
        if pid_matches "$c" "$pid"; then
            if port_open "$port"; then
                printf '%-12s running  pid=%s  127.0.0.1:%s\n' "$c" "$pid" "$port"
            else
                printf '%-12s running  pid=%s  127.0.0.1:%s (not accepting connections yet)\n' "$c" "$pid" "$port"
            fi
        else
            printf '%-12s stopped\n' "$c"
            rc=1
        fi
    done
    return $rc
}

cmd_clean() {
    local c
    for c in "${COMPONENTS[@]}"; do
        is_running "$c" && die "$c is running: run 'scripts/infra.sh down --topology $TOPOLOGY' first"
    done
    [[ -d "$STATE" ]] || return 0
    if [[ "$TOPOLOGY" == single ]]; then
        select_component postgres
        rm -rf "$PG_ROOT" "$INFRA/redis" "$INFRA/kafka/data" "$INFRA/kafka/cluster.id" \
            "$INFRA/kafka/server.properties" "$LOGS" "$PIDS" "$STATE/profile" "$SECRETS"
    else
        for c in pg-primary pg-replica; do
            select_component "$c"
            rm -rf "$PG_ROOT"
        done
        rm -rf "$STATE"
    fi
    log "removed the $TOPOLOGY topology's data and logs under $STATE (kept $KAFKA_LIBS)"
}

cmd_env() {
    if [[ "$PROFILE" == secure ]]; then
        cat <<EOF
export QUIZMESH_KAFKA_SECURITY_PROTOCOL=SASL_SSL
export QUIZMESH_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
export QUIZMESH_KAFKA_USERNAME=quizmesh
export QUIZMESH_KAFKA_PASSWORD_FILE=$(secret_file kafka-quizmesh)
export QUIZMESH_KAFKA_CA_FILE=$SECRETS/ca.pem
export QUIZMESH_REDIS_USERNAME=quizmesh
export QUIZMESH_REDIS_PASSWORD_FILE=$(secret_file redis-quizmesh)
export QUIZMESH_REDIS_CA_FILE=$SECRETS/ca.pem
EOF
    fi
    if [[ "$TOPOLOGY" == single ]]; then
        local scheme=redis
        [[ "$PROFILE" == plain ]] || scheme=rediss
        cat <<EOF
export QUIZMESH_KAFKA_BOOTSTRAP=$(kafka_bootstrap)
export QUIZMESH_REDIS_URL=$scheme://127.0.0.1:$SINGLE_REDIS_PORT/0
export QUIZMESH_POSTGRES_DSN=postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$SINGLE_PG_PORT/$PG_DB
export QUIZMESH_POSTGRES_MIGRATION_DSN=postgresql://$PG_MIGRATOR:$PG_MIGRATOR_PASSWORD@127.0.0.1:$SINGLE_PG_PORT/$PG_DB
export QUIZMESH_PGBOUNCER_DSN=postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$SINGLE_PGBOUNCER_PORT/$PG_DB
EOF
        return 0
    fi
    local c seeds=()
    for c in "${REDIS_CLUSTER_NODES[@]}"; do seeds+=("redis://127.0.0.1:$(component_port "$c")"); done
    cat <<EOF
export QUIZMESH_KAFKA_BOOTSTRAP=$(kafka_bootstrap)
export QUIZMESH_REDIS_MODE=cluster
export QUIZMESH_REDIS_URL=$(IFS=,; echo "${seeds[*]}")
export QUIZMESH_REDIS_PUBSUB_URL=redis://127.0.0.1:$CLUSTER_REDIS_PUBSUB_PORT/0
export QUIZMESH_REDIS_WAIT_REPLICAS=1
export QUIZMESH_POSTGRES_DSN=postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$CLUSTER_PG_PORT/$PG_DB
export QUIZMESH_POSTGRES_MIGRATION_DSN=postgresql://$PG_MIGRATOR:$PG_MIGRATOR_PASSWORD@127.0.0.1:$CLUSTER_PG_PORT/$PG_DB
export QUIZMESH_POSTGRES_REPLICA_DSN=postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$CLUSTER_PG_REPLICA_PORT/$PG_DB
EOF
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# One mutating command at a time per topology (fd 9 holds the lock; servers are started with 9>&-
# so they never inherit it).
take_lock() {
    ensure_dirs
    command -v flock >/dev/null || return 0
    exec 9>"$STATE/.lock"
    flock -w 600 9 || die "another scripts/infra.sh is still running (lock $STATE/.lock)"
}

main() {
    local args=() topology="${QUIZMESH_INFRA_TOPOLOGY:-single}" secure=""
    [[ "${QUIZMESH_INFRA_SECURE:-0}" == 1 ]] && secure=yes
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --topology)
                [[ $# -ge 2 ]] || die "--topology needs a value: single or cluster"
                topology="$2"
                shift 2
                ;;
            --topology=*) topology="${1#--topology=}"; shift ;;
            --secure) secure=yes; shift ;;
            *) args+=("$1"); shift ;;
        esac
    done
    set -- "${args[@]+"${args[@]}"}"
    use_topology "$topology"
    use_profile "$secure"
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        up) take_lock; cmd_up ;;
        down) take_lock; cmd_down ;;
        status) cmd_status ;;
        env) cmd_env ;;
        clean) take_lock; cmd_clean ;;
        start)
            [[ $# -eq 1 ]] || die "usage: $0 start COMPONENT (one of: ${COMPONENTS[*]})"
            take_lock
            start_component "$1"
            ;;
        stop)
            [[ $# -ge 1 && $# -le 2 ]] || die "usage: $0 stop COMPONENT [--kill] (one of: ${COMPONENTS[*]})"
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
