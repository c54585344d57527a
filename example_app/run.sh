#!/usr/bin/env bash
# Set up a virtualenv (once) and serve the example app with gunicorn's gevent worker.
# Usage: bash example_app/run.sh [--dev] [--port N]
set -euo pipefail
cd "$(dirname "$0")/.."
port=8000
dev=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) dev=1 ;;
    --port) port="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[deploy]'
if [ "$dev" = 1 ]; then
  exec .venv/bin/flask --app 'example_app:create_app()' run --port "$port"
fi
exec .venv/bin/gunicorn -k gevent -w 1 --bind "127.0.0.1:$port" 'example_app:create_app()'
