#!/usr/bin/env bash
# Refreshes the released-contract baseline, protos/released/quizmesh-v1.binpb: a buf image of protos/
# that `buf breaking` (tests/contracts, `make lint`) compares every later change against.
#
# Run it deliberately, when a contract version is released, and commit the image with the protos.
# Refreshing the baseline is how a breaking change would slip through unnoticed, so when an image
# already exists this refuses a change that breaks it unless --allow-breaking is given (meant only
# for contracts never released to anyone, such as before the first release).
#
# Usage: scripts/release_contracts.sh [--allow-breaking]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

IMAGE=protos/released/quizmesh-v1.binpb
BUF=node_modules/.bin/buf
allow_breaking=0

for arg in "$@"; do
    case "$arg" in
        --allow-breaking) allow_breaking=1 ;;
        -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "release_contracts: unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done

if [[ ! -x "$BUF" ]]; then
    echo "release_contracts: $BUF is missing; run \`npm ci\` first" >&2
    exit 1
fi

"$BUF" lint
"$BUF" format --diff --exit-code

if [[ -f "$IMAGE" ]]; then
    if ! "$BUF" breaking --against "$IMAGE"; then
        if [[ "$allow_breaking" != 1 ]]; then
            echo "release_contracts: the protos break the released contracts ($IMAGE); see above." >&2
            echo "release_contracts: fix them, or re-run with --allow-breaking if $IMAGE was never released." >&2
            exit 1
        fi
        echo "release_contracts: replacing $IMAGE despite breaking changes (--allow-breaking)" >&2
    fi
fi

mkdir -p "$(dirname "$IMAGE")"
tmp=$(mktemp "$IMAGE.XXXXXX")
trap 'rm -f "$tmp"' EXIT
"$BUF" build -o "$tmp#format=binpb"
mv "$tmp" "$IMAGE"
trap - EXIT

echo "release_contracts: wrote $IMAGE ($(wc -c < "$IMAGE") bytes, sha256 $(sha256sum "$IMAGE" | cut -c1-16))"
