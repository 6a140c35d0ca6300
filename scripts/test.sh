#!/usr/bin/env bash
# The README's test command: install everything, start the services, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
eval "$(bash scripts/system-deps.sh)"
exec .venv/bin/python -m pytest -q "$@"
