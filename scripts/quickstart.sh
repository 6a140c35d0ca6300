#!/usr/bin/env bash
# The README's main command: install, then ingest -> train -> evaluate -> export -> serve
# on the ABID sample beside this checkout. Extra arguments go to `bintally quickstart`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/bintally quickstart --data "${BINTALLY_DATA:-../shared/abid}" "$@"
