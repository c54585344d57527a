#!/usr/bin/env bash
# Serve the example app: set up .venv and node_modules (once), build the page's JavaScript if it
# is missing or stale, then run gunicorn's gevent worker (or Flask's dev server with --dev).
# Usage: bash example_app/run.sh [--dev] [--port N] [--workers N]
# Several workers need a message queue: FLASK_VERDANT_MESSAGE_QUEUE=redis://127.0.0.1:6379/0
set -euo pipefail
cd "$(dirname "$0")/.."
port=8000
dev=0
workers=1
# Each gevent worker holds up to this many clients at once (gunicorn's default is 1,000), and
# each client is an open file: the open-files limit must exceed it.
worker_connections=10000
open_files=$((worker_connections + 1024))
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) dev=1 ;;
    --port) port="$2"; shift ;;
    --workers) workers="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[deploy]'
if [ ! -d example_app/node_modules ]; then
  bash .ci/install-store5 example_app
fi
node example_app/frontend/build.mjs
echo "Serving the example app on http://127.0.0.1:$port"
if [ "$dev" = 1 ]; then
  exec .venv/bin/flask --app 'example_app:create_app()' run --port "$port"
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$open_files" ]; then
  ulimit -n "$open_files" 2>/dev/null || {
    hard=$(ulimit -Hn)
    ulimit -n "$hard"
    echo "warning: open files limited to $hard; fewer than $worker_connections clients per worker" >&2
  }
fi
exec .venv/bin/gunicorn -k gevent -w "$workers" --worker-connections "$worker_connections" \
  --bind "127.0.0.1:$port" --graceful-timeout 5 'example_app:create_app()'
