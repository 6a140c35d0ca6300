#!/usr/bin/env bash
# Services the tests use for real: PostgreSQL (shared Optuna storage), Chromium (the web page), and podman with
# runc and debootstrap (the serve image is built and run; scripts/container.sh).
# Installs them from Debian if missing, starts PostgreSQL, and prints the env line for the tests.
set -euo pipefail
# stdout carries only the env line the caller evals; all else goes to stderr. The setup runs with
# that pipe closed: a daemon started here (PostgreSQL) must not inherit it, or the caller's
# `$(...)` waits for EOF forever.
{
  need=()
  command -v chromium >/dev/null || need+=(chromium)
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
  for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || need+=("$tool"); done
  if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_lsclusters -h | grep -q "^$version main" || pg_createcluster "$version" main >/dev/null
  pg_ctlcluster "$version" main start </dev/null >/dev/null 2>&1 || pg_ctlcluster "$version" main status >/dev/null
  su postgres -c "psql -qtc \"SELECT 1 FROM pg_roles WHERE rolname='bintally'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"CREATE ROLE bintally LOGIN PASSWORD 'bintally' CREATEDB\""
  su postgres -c "psql -qtc \"SELECT 1 FROM pg_database WHERE datname='bintally_test'\"" | grep -q 1 \
    || su postgres -c "createdb -O bintally bintally_test"
} </dev/null 1>&2
echo "export BINTALLY_TEST_POSTGRES_URL=postgresql://bintally:bintally@127.0.0.1:5432/bintally_test"
