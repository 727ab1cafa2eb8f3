#!/usr/bin/env bash
# Writes requirements.lock: every distribution the image installs (pyproject.toml's dependencies and
# its build-system requirements, which deploy/Containerfile builds the project with), pinned with
# their hashes for every platform, for `pip install --require-hashes`.
#
#   scripts/lock.sh [OUT]    OUT defaults to requirements.lock; existing pins in OUT are kept
#                            unless pyproject.toml no longer allows them (uv's preference rule), so
#                            a refresh changes only what it must. Upgrade: delete OUT first, or
#                            pass uv's --upgrade-package NAME via UV_ARGS.
# Needs uv (the dev extra installs it) and PyPI.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$REPO/requirements.lock}"
PYTHON="${PYTHON:-python3}"
cd "$REPO"
"$PYTHON" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
  | "$PYTHON" -m uv pip compile pyproject.toml - --universal --python-version 3.11 --generate-hashes --quiet \
      --custom-compile-command "make lock" ${UV_ARGS:-} -o "$OUT"
