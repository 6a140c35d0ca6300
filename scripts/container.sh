#!/usr/bin/env bash
# Build bintally's serve (default) or full image with podman on a machine without a container registry:
# a Debian base made by debootstrap, and the Python packages as a wheelhouse from the host's package index.
#   bash scripts/container.sh [serve|full]      -> localhost/bintally:serve (or :full)
#   bash scripts/container.sh postgres          -> localhost/bintally-postgres:15 (compose.yaml's POSTGRES_IMAGE here)
#   bash scripts/container.sh up [SERVICE...]   -> podman-compose up -d, given up after BINTALLY_COMPOSE_TIMEOUT s (600)
# With a registry, `podman build --target serve -t bintally:serve .` (or docker) needs none of this.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-serve}
work=$(realpath -m "${BINTALLY_CONTAINER_WORK:-build/container}")
mkdir -p "$work"
# This machine's settings for podman (crun refuses its cgroup layout; no ulimit changes allowed).
if [ -z "${CONTAINERS_CONF:-}" ]; then
  export CONTAINERS_CONF="$work/containers.conf"
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = "cgroupfs"\n' >"$CONTAINERS_CONF"
fi
if [ "$target" = up ]; then
  # podman-compose waits forever for a dependency whose container could not be created: bound it, and say so.
  limit=${BINTALLY_COMPOSE_TIMEOUT:-600}
  status=0
  timeout --kill-after=10 "$limit" podman-compose --podman-args="--runtime runc" up -d "${@:2}" || status=$?
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "error: podman-compose up did not finish in $limit s. It waits forever for a service whose container could" \
      "not be created (an image not built or not pullable: see the errors above), or one is still starting" \
      "(BINTALLY_COMPOSE_TIMEOUT=SECONDS waits longer). 'podman-compose down' removes what was started." >&2
  fi
  exit "$status"
fi
podman=(podman --runtime runc)
base=localhost/bintally-base:bookworm
if ! "${podman[@]}" image exists "$base"; then
  root="$work/base-root"
  rm -rf "$root"
  debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | "${podman[@]}" import - "$base" >/dev/null
  rm -rf "$root"
fi
if [ "$target" = postgres ]; then
  "${podman[@]}" build --network host --build-arg BASE="$base" -t localhost/bintally-postgres:15 scripts/postgres
  exit
fi
extra=$([ "$target" = full ] && echo "[train]" || true)
wheels="build/wheels-$target"
PIP=${PIP:-.venv/bin/pip}
"$PIP" wheel --quiet --disable-pip-version-check --wheel-dir "$wheels" ".$extra" 2>"$work/wheels.log"
"${podman[@]}" build --network host --target "$target" --build-arg BASE="$base" --build-arg WHEELS="$wheels" \
  -t "localhost/bintally:$target" -f Containerfile .
"${podman[@]}" image inspect "localhost/bintally:$target" --format "localhost/bintally:$target {{.Size}} bytes"
