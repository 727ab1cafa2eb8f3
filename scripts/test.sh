#!/usr/bin/env bash
# Runs quizmesh's whole test suite, as CI does (.ci/run):
#   1. installs what is missing: the Python package with its dev extra, buf from npm, Chromium (as root);
#   2. starts Kafka, Redis and PostgreSQL (scripts/infra.sh up) and exports their settings;
#   3. ruff check, ruff format --check, mypy;
#   4. pytest -ra: every test, slow ones included (extra arguments are passed to pytest), except those
#      marked `cluster`;
#   5. the multi-node topology (scripts/infra.sh up --topology cluster, after the single-node one is
#      stopped): the tests marked `cluster` and the end-to-end and store tests again on it
#      (CLUSTER_TESTS below, without their embedded/in-memory/SQLite variants); QUIZMESH_TEST_CLUSTER=0
#      skips this pass;
#   6. stops the infrastructure on exit, unless QUIZMESH_KEEP_INFRA=1.
# Exits non-zero if a pytest run fails or collects nothing (the first failing exit code is kept), or if
# a lint step fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python}"
NPM_STAMP=node_modules/.quizmesh-package-lock.sha256

step() { printf '\n==== %s ====\n' "$*"; }
note() { printf '[test] %s\n' "$*" >&2; }

# Exits 0 when the installed quizmesh is an editable install of this checkout and every requirement
# in pyproject.toml (the dev extra included) is satisfied, so `pip install` can be skipped.
python_deps_ok() {
    # -P: keep the checkout (and its quizmesh.egg-info) off sys.path, so the installed metadata is read.
    "$PYTHON" -P - <<'PY'
import importlib.metadata as md
import json
import pathlib
import sys
import tomllib

from packaging.requirements import Requirement

root = pathlib.Path.cwd()
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]


def fail(reason: str) -> None:
    print(f"[test] python deps: {reason}", file=sys.stderr)
    sys.exit(1)


try:
    dist = md.distribution(project["name"])
except md.PackageNotFoundError:
    fail(f"{project['name']} is not installed")
direct = json.loads(dist.read_text("direct_url.json") or "{}")
if not direct.get("dir_info", {}).get("editable") or direct.get("url") != root.as_uri():
    fail(f"{project['name']} is not an editable install of {root}")
scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
if scripts != project.get("scripts", {}):
    fail("console scripts changed")


def check(spec: str, extras: dict[str, str]) -> None:
    req = Requirement(spec)
    if req.marker and not req.marker.evaluate(extras):
        return
    try:
        version = md.version(req.name)
    except md.PackageNotFoundError:
        fail(f"{req.name} is missing")
    if not req.specifier.contains(version, prereleases=True):
        fail(f"{req.name} {version} does not satisfy {req.specifier}")
    for extra in req.extras:
        for sub in md.requires(req.name) or []:
            if "extra" in sub:  # only the extra's own requirements
                check(sub, {"extra": extra})


for spec in [*project["dependencies"], *project.get("optional-dependencies", {}).get("dev", [])]:
    check(spec, {"extra": ""})
PY
}

step "python dependencies"
if python_deps_ok; then
    note "installed and up to date"
else
    "$PYTHON" -m pip install -e '.[dev]'
fi

step "chromium (browser tests)"
if [[ -x /usr/bin/chromium ]]; then
    note "/usr/bin/chromium is installed"
elif [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
else
    note "/usr/bin/chromium is missing and this is not root: the browser tests skip (and fail under CI=true)"
fi

step "npm dependencies (buf)"
if ! command -v npm >/dev/null; then
    echo "[test] npm is missing: install Node.js and npm (Debian: apt-get install -y nodejs npm)" >&2
    exit 1
fi
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ -x node_modules/.bin/buf && -f "$NPM_STAMP" && "$(cat "$NPM_STAMP")" == "$lock_sum" ]]; then
    note "node_modules matches package-lock.json"
else
    npm ci
    printf '%s\n' "$lock_sum" >"$NPM_STAMP"
fi

# What runs again on the multi-node topology: every test marked `cluster`, the end-to-end suite, and the
# stores and services whose engines change there (Redis Cluster, 3 brokers, replica, partitions).
CLUSTER_TESTS=(tests/cluster tests/e2e tests/edge/test_edge_results.py tests/quiz_svc tests/leaderboard_svc
    tests/persistence_svc)
cluster_up=0

on_exit() {
    local rc=$?
    if [[ "${QUIZMESH_KEEP_INFRA:-0}" == 1 ]]; then
        step "infra left running (QUIZMESH_KEEP_INFRA=1); stop it with: scripts/infra.sh down [--topology cluster]"
    else
        step "infra down"
        bash scripts/infra.sh down || note "warning: scripts/infra.sh down failed"
        if [[ $cluster_up == 1 ]]; then
            bash scripts/infra.sh down --topology cluster || note "warning: scripts/infra.sh down --topology cluster failed"
        fi
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export_infra_env() { # [--topology cluster]
    local infra_env
    infra_env="$(bash scripts/infra.sh env "$@")"
    set -a
    eval "$infra_env"
    set +a
    note "exported: $(printf '%s\n' "$infra_env" | sed -n 's/^\(export \)\{0,1\}\([A-Za-z_][A-Za-z0-9_]*\)=.*/\2/p' | tr '\n' ' ')"
}

step "infra up"
bash scripts/infra.sh up
export_infra_env

failed_checks=()
check() { # name command...
    local name="$1"
    shift
    step "$name"
    if "$@"; then
        note "$name: ok"
    else
        note "$name: FAILED"
        failed_checks+=("$name")
    fi
}
check "ruff check" ruff check .
check "ruff format" ruff format --check .
check "mypy" mypy .

step "pytest"
set +e
"$PYTHON" -m pytest -ra -m "not cluster" "$@"
pytest_rc=$?
set -e
if [[ $pytest_rc -eq 5 ]]; then
    note "pytest collected no tests: treated as a failure"
fi

if [[ "${QUIZMESH_TEST_CLUSTER:-1}" != 0 ]]; then
    step "multi-node topology up"
    cluster_started=$(date +%s)
    [[ "${QUIZMESH_KEEP_INFRA:-0}" == 1 ]] || bash scripts/infra.sh down
    cluster_up=1
    bash scripts/infra.sh up --topology cluster
    unset QUIZMESH_REDIS_MODE QUIZMESH_REDIS_PUBSUB_URL QUIZMESH_POSTGRES_REPLICA_DSN
    export_infra_env --topology cluster
    step "pytest on the multi-node topology"
    set +e
    "$PYTHON" -m pytest -ra -k "not embedded and not memory and not sqlite" "${CLUSTER_TESTS[@]}"
    cluster_rc=$?
    set -e
    note "the multi-node pass took $(($(date +%s) - cluster_started)) s, bringing its topology up included"
    if [[ $cluster_rc -eq 5 ]]; then
        note "pytest collected no tests on the multi-node topology: treated as a failure"
    fi
    if [[ $pytest_rc -eq 0 ]]; then
        pytest_rc=$cluster_rc
    fi
fi

step "summary"
if [[ ${#failed_checks[@]} -gt 0 ]]; then
    note "failed lint steps: ${failed_checks[*]}"
fi
note "pytest exit code: $pytest_rc (the first failing run's)"
if [[ $pytest_rc -ne 0 ]]; then
    exit "$pytest_rc"
fi
if [[ ${#failed_checks[@]} -gt 0 ]]; then
    exit 1
fi
note "all passed"
