#!/usr/bin/env bash
# Starts Strata locally: dsd on 127.0.0.1 with a local data directory, and a
# gateway in front of it. Ctrl-C stops everything cleanly.
set -euo pipefail
bin=${1:-bin}
config=${2:-strata.example.toml}
data=${3:-data}

mkdir -p "$data"
"$bin/dsd" --config "$config" --data-dir "$data" &
dsd=$!
"$bin/gateway" --config "$config" &
gateway=$!

stop() {
  kill -TERM "$gateway" 2>/dev/null || true
  wait "$gateway" 2>/dev/null || true
  kill -TERM "$dsd" 2>/dev/null || true
  wait "$dsd" 2>/dev/null || true
}
trap stop INT TERM

cat <<MSG

  Strata is starting (the addresses of strata.example.toml; the "dsd ready" and
  "gateway ready" log lines name the ones in use with $config).
    dsd gRPC       127.0.0.1:7070   (try: $bin/dstool info)
    dsd HTTP       http://127.0.0.1:7071/healthz
    gateway MQTT   127.0.0.1:1883   (try: mosquitto_sub -V mqttv5 -h 127.0.0.1 -t 'a/#' -d)
    gateway HTTP   http://127.0.0.1:7072/metrics
    data           $data/
  Press Ctrl-C to stop.

MSG
set +e
# Either program ending ends the run (wait -n), and the other is stopped.
wait -n "$dsd" "$gateway"
status=$?
stop
# 130/143: stopped by our own trap after Ctrl-C or SIGTERM.
if [ "$status" -ne 0 ] && [ "$status" -ne 130 ] && [ "$status" -ne 143 ]; then
  echo "a Strata program exited with status $status" >&2
  exit "$status"
fi
