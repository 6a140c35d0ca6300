#!/usr/bin/env bash
# Run a command as on a CPU with AVX2 and FMA but no AVX-512, AVX-VNNI or AMX, on the real silicon of this one:
# avx2_only.c hides those features from every cpuid in the command's processes (ONNX Runtime, oneDNN and numpy
# then pick their AVX2 kernels), and BINTALLY_CPU_FLAGS hides them from bintally's own choices and descriptions.
#   bash benchmarks/avx2_only.sh python benchmarks/inference.py --json benchmarks/results/inference-avx2-only.json
# Needs Linux's CPUID faulting (flag cpuid_fault in /proc/cpuinfo: Intel CPUs since Ivy Bridge, and their VMs).
set -euo pipefail
if ! grep -qw cpuid_fault /proc/cpuinfo; then
    echo "avx2_only: this CPU cannot make cpuid fault (no cpuid_fault in /proc/cpuinfo)" >&2
    exit 3
fi
# Built once per version of the source and kept (exec below leaves no shell to clean a temporary copy up).
source="$(dirname "$0")/avx2_only.c"
flags=(-O2 -shared -fPIC)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/bintally"
lib="$cache/avx2_only-$( (echo "${flags[*]}"; cat "$source") | sha256sum | cut -c1-16).so"
if [ ! -f "$lib" ]; then
    mkdir -p "$cache"
    gcc "${flags[@]}" -o "$lib.$$" "$source"
    mv "$lib.$$" "$lib"  # atomic: a run beside this one never loads a half-written library
fi
export LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}" BINTALLY_CPU_FLAGS=avx2
exec "$@"
