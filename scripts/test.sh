#!/usr/bin/env bash
# Runs quizmesh's whole test suite, as CI does (.ci/run):
#   1. installs what is missing: the Python package with its dev extra, buf from npm, Chromium (as root);
#   2. starts Kafka, Redis and PostgreSQL (scripts/infra.sh up) and exports their settings;
#   3. ruff check, ruff format --check, mypy;
#   4. pytest -ra: every test, slow ones included (extra arguments are passed to pytest);
#   5. stops the infrastructure on exit, unless QUIZMESH_KEEP_INFRA=1.
# Exits non-zero if pytest fails or collects nothing (its exit code is kept), or if a lint step fails.
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

on_exit() {
    local rc=$?
    if [[ "${QUIZMESH_KEEP_INFRA:-0}" == 1 ]]; then
        step "infra left running (QUIZMESH_KEEP_INFRA=1); stop it with: scripts/infra.sh down"
    else
        step "infra down"
        bash scripts/infra.sh down || note "warning: scripts/infra.sh down failed"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "infra up"
bash scripts/infra.sh up
infra_env="$(bash scripts/infra.sh env)"
set -a
eval "$infra_env"
set +a
note "exported: $(printf '%s\n' "$infra_env" | sed -n 's/^\(export \)\{0,1\}\([A-Za-z_][A-Za-z0-9_]*\)=.*/\2/p' | tr '\n' ' ')"

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
"$PYTHON" -m pytest -ra "$@"
pytest_rc=$?
set -e
if [[ $pytest_rc -eq 5 ]]; then
    note "pytest collected no tests: treated as a failure"
fi

step "summary"
if [[ ${#failed_checks[@]} -gt 0 ]]; then
    note "failed lint steps: ${failed_checks[*]}"
fi
note "pytest exit code: $pytest_rc"
if [[ $pytest_rc -ne 0 ]]; then
    exit "$pytest_rc"
fi
if [[ ${#failed_checks[@]} -gt 0 ]]; then
    exit 1
fi
note "all passed"
