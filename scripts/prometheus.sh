#!/usr/bin/env bash
# A real Prometheus (Debian's package) watching a local quizmesh, with the shipped alert rules.
#
# Usage:
#   scripts/prometheus.sh install        apt-get install prometheus (server and promtool) if missing
#   scripts/prometheus.sh up [--target JOB=HOST:PORT]... [--kafka HOST:PORT] [--time-scale F]
#                                        write the config, start Prometheus (and, with --kafka, the
#                                        local Kafka lag exporter), wait until ready
#   scripts/prometheus.sh down           stop what `up` started (by PID file)
#   scripts/prometheus.sh status         print each process; exit 0 only if all are running
#   scripts/prometheus.sh url            print Prometheus's base URL
#
# --target: one metrics endpoint of a process (QUIZMESH_METRICS_PORT) under its job, as in
#   Kubernetes: edge, quiz-svc, leaderboard-svc, persistence-svc. Repeat it for every process, several
#   per job in a multi-node topology.
# --kafka: the bootstrap address; starts scripts/kafka_lag_exporter.py (job quizmesh-kafka-exporter),
#   which serves consumer-group lag as Strimzi's Kafka Exporter does in Kubernetes.
# --time-scale F: every duration of the rules multiplied by F (scripts/prometheus_config.py), e.g.
#   0.0333 turns `for: 5m` into 10s for tests; 1 (the default) evaluates the rules as shipped.
#
# Environment: QUIZMESH_PROMETHEUS_DIR (default $REPO/.infra/prometheus: config, data, logs, PID
# files), QUIZMESH_PROMETHEUS_PORT (19090), QUIZMESH_KAFKA_EXPORTER_PORT (19308),
# QUIZMESH_PROMETHEUS_INTERVAL (scrape and evaluation interval, 1s), PYTHON (python3).
# Only processes whose PID file names them (and whose command line matches what this script
# launched) are ever signalled. Nothing is killed by name.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${QUIZMESH_PROMETHEUS_DIR:-$REPO/.infra/prometheus}"
PORT="${QUIZMESH_PROMETHEUS_PORT:-19090}"
EXPORTER_PORT="${QUIZMESH_KAFKA_EXPORTER_PORT:-19308}"
INTERVAL="${QUIZMESH_PROMETHEUS_INTERVAL:-1s}"
PYTHON="${PYTHON:-python3}"
STOP_TIMEOUT=20
CONSUMER_GROUPS=(leaderboard_svc persistence_svc)

log() { printf '[prometheus] %s\n' "$*" >&2; }
die() { printf '[prometheus] ERROR: %s\n' "$*" >&2; exit 1; }

pidfile() { echo "$DIR/$1.pid"; }
read_pid() { [[ -f "$(pidfile "$1")" ]] && head -n1 "$(pidfile "$1")" | tr -dc '0-9' || true; }
cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

pid_matches() { # name pid: the PID is the process this script launched for that name
  local pid="$2" cmd
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  cmd="$(cmdline_of "$pid")"
  case "$1" in
    prometheus) [[ "$cmd" == *prometheus* && "$cmd" == *"--config.file=$DIR/prometheus.yml"* ]] ;;
    exporter) [[ "$cmd" == *kafka_lag_exporter.py* && "$cmd" == *"--port $EXPORTER_PORT"* ]] ;;
    *) return 1 ;;
  esac
}

is_running() { pid_matches "$1" "$(read_pid "$1")"; }

install() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  [[ $EUID -eq 0 ]] || die "prometheus is missing: install it (sudo apt-get install -y prometheus) and re-run"
  command -v apt-get >/dev/null || die "prometheus is missing and there is no apt-get; install it by hand"
  log "installing Debian's prometheus package"
  mkdir -p "$DIR"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  # RUNLEVEL=1: Debian's invoke-rc.d does not start the packaged system service; ours runs on its own port.
  RUNLEVEL=1 apt-get install -y -qq --no-install-recommends prometheus >"$DIR/apt-install.log" 2>&1 \
    || { tail -n 30 "$DIR/apt-install.log" >&2; die "apt-get install prometheus failed"; }
}

launch() { # name logfile command... (in a new session, so the caller's signals do not reach it)
  local name="$1" logf="$2" waited=0
  shift 2
  rm -f "$(pidfile "$name")"
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$(pidfile "$name")" "$@" >"$logf" 2>&1 < /dev/null &
  # The PID file is written by the new session's shell, which a busy machine may start late.
  until [[ -s "$(pidfile "$name")" ]]; do
    ((waited++ < 100)) || { tail -n 30 "$logf" >&2; die "$name did not start (no PID file after 10 s)"; }
    sleep 0.1
  done
}

wait_http() { # name url timeout
  local deadline=$(($(date +%s) + $3))
  until curl -fsS -o /dev/null "$2" 2>/dev/null; do
    is_running "$1" || { tail -n 30 "$DIR/$1.log" >&2; die "$1 exited while starting (see $DIR/$1.log)"; }
    (($(date +%s) < deadline)) || { tail -n 30 "$DIR/$1.log" >&2; die "$1 not ready after $3 s"; }
    sleep 0.3
  done
}

up() {
  local targets=() kafka="" scale=1
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --target) targets+=(--target "$2"); shift 2 ;;
      --kafka) kafka="$2"; shift 2 ;;
      --time-scale) scale="$2"; shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
  install
  command -v curl >/dev/null || die "curl is needed to wait for readiness"
  is_running prometheus && die "already running (PID $(read_pid prometheus)); run down first"
  mkdir -p "$DIR/data"
  if [[ -n "$kafka" ]]; then
    targets+=(--target "quizmesh-kafka-exporter=127.0.0.1:$EXPORTER_PORT")
    local groups=()
    for g in "${CONSUMER_GROUPS[@]}"; do groups+=(--group "$g"); done
    launch exporter "$DIR/exporter.log" "$PYTHON" "$REPO/scripts/kafka_lag_exporter.py" \
      --bootstrap "$kafka" --port "$EXPORTER_PORT" "${groups[@]}"
    wait_http exporter "http://127.0.0.1:$EXPORTER_PORT/metrics" 30
  fi
  [[ ${#targets[@]} -gt 0 ]] || die "nothing to scrape: give --target JOB=HOST:PORT and/or --kafka"
  "$PYTHON" "$REPO/scripts/prometheus_config.py" rules "$DIR/rules.yaml" --time-scale "$scale"
  "$PYTHON" "$REPO/scripts/prometheus_config.py" config "$DIR/prometheus.yml" --rules "$DIR/rules.yaml" \
    --scrape-interval "$INTERVAL" --evaluation-interval "$INTERVAL" "${targets[@]}"
  promtool check config "$DIR/prometheus.yml" >/dev/null || die "promtool rejected $DIR/prometheus.yml"
  launch prometheus "$DIR/prometheus.log" prometheus "--config.file=$DIR/prometheus.yml" \
    "--storage.tsdb.path=$DIR/data" "--web.listen-address=127.0.0.1:$PORT" --log.level=warn
  wait_http prometheus "http://127.0.0.1:$PORT/-/ready" 60
  log "ready at http://127.0.0.1:$PORT (rules time scale $scale)"
}

stop_one() { # name
  local pid
  pid="$(read_pid "$1")"
  if ! pid_matches "$1" "$pid"; then
    rm -f "$(pidfile "$1")"
    return 0
  fi
  log "$1: sending SIGTERM to PID $pid"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$(($(date +%s) + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if (($(date +%s) >= deadline)); then
      log "$1: PID $pid still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$(pidfile "$1")"
}

status() {
  local rc=0 name
  for name in prometheus exporter; do
    if is_running "$name"; then
      echo "$name: running (PID $(read_pid "$name"))"
    else
      echo "$name: stopped"
      [[ "$name" == exporter && ! -f "$(pidfile exporter)" ]] || rc=1
    fi
  done
  return $rc
}

case "${1:-}" in
  install) install ;;
  up) shift; up "$@" ;;
  down) stop_one prometheus; stop_one exporter ;;
  status) status ;;
  url) echo "http://127.0.0.1:$PORT" ;;
  *) sed -n '2,26p' "$0" >&2; exit 2 ;;
esac
