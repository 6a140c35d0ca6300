#!/usr/bin/env bash
# The accuracy benchmark on a lent GPU machine, from the folder benchmarks/device_pack.py made:
#
#   python benchmarks/device_pack.py                                   # here, once
#   device tool: run(command="bash benchmarks/device_accuracy.sh", carry=["runs/device"], timeout_s=600)
#
# Installs the packed wheels (if any) beside the machine's own packages, unpacks the bins, and runs
# `benchmarks/accuracy.py --preset gpu` (or the arguments given) with the packed weights; the result JSON and the
# log land in $OUT (the device tool's folder that comes back), else runs/device-out.
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=${PACK:-runs/device}
RESULT=${OUT:-runs/device-out}
PY=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$RESULT"
site="$work/site"
if compgen -G "$PACK/wheels/*.whl" >/dev/null; then
  "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$PACK"/wheels/*.whl
fi
export PYTHONPATH="$site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -m zipfile -e "$PACK/abid.zip" "$work/abid"
[ $# -gt 0 ] || set -- --preset gpu
"$PY" benchmarks/accuracy.py --data "$work/abid" --weights "$PACK/lite0.safetensors" --out "$work/accuracy" \
  --json "$RESULT/accuracy.json" "$@" 2>&1 | tee "$RESULT/accuracy.log"
