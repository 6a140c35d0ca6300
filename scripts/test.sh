#!/usr/bin/env bash
# The README's test command: install everything, start the services, check lint, format and types,
# then run the whole suite. A failed step fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Assigned first, so a failed service setup stops here (`eval "$(...)"` alone would ignore it).
services_env=$(bash scripts/system-deps.sh)
eval "$services_env"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports  # the layers and no-loops contracts in pyproject.toml
exec .venv/bin/python -m pytest -q "$@"
