#!/usr/bin/env bash
# Create .venv and install bintally with its training and test extras. Idempotent: a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch==2.14.1 / torchvision==0.29.1 install from wheels on this machine's disk (pinned in pyproject.toml).
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[train,dev,ray]'
