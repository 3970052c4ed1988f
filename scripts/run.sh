#!/usr/bin/env bash
# Starts Strata locally: dsd on 127.0.0.1 with a local data directory (the
# gateway joins here once it exists). Ctrl-C stops everything cleanly.
set -euo pipefail
bin=${1:-bin}
config=${2:-strata.example.toml}
data=${3:-data}

mkdir -p "$data"
"$bin/dsd" --config "$config" --data-dir "$data" &
dsd=$!

stop() {
  kill -TERM "$dsd" 2>/dev/null || true
  wait "$dsd" 2>/dev/null || true
}
trap stop INT TERM

cat <<MSG

  Strata is starting.
    dsd gRPC   127.0.0.1:7070   (try: $bin/dstool info)
    dsd HTTP   http://127.0.0.1:7071/healthz
    data       $data/
  Press Ctrl-C to stop.

MSG
set +e
wait "$dsd"
status=$?
# 130/143: stopped by our own trap after Ctrl-C or SIGTERM.
if [ "$status" -ne 0 ] && [ "$status" -ne 130 ] && [ "$status" -ne 143 ]; then
  echo "dsd exited with status $status" >&2
  exit "$status"
fi
