#!/usr/bin/env bash
# Starts Strata locally: dsd on 127.0.0.1 with a local data directory, and a
# gateway in front of it once dsd is ready. Ctrl-C stops everything cleanly.
set -euo pipefail
bin=${1:-bin}
config=${2:-strata.example.toml}
data=${3:-data}

mkdir -p "$data"
dsdlog=$(mktemp)
gateway=
# dsd's log goes to the terminal and to $dsdlog, where its "dsd ready" line
# names its HTTP address.
"$bin/dsd" --config "$config" --data-dir "$data" 2> >(tee "$dsdlog" >&2) &
dsd=$!

stop() {
  if [ -n "$gateway" ]; then
    kill -TERM "$gateway" 2>/dev/null || true
    wait "$gateway" 2>/dev/null || true
  fi
  kill -TERM "$dsd" 2>/dev/null || true
  wait "$dsd" 2>/dev/null || true
  rm -f "$dsdlog"
}
trap 'stop; exit 0' INT TERM

# readyz asks dsd's /readyz at host:port $1; true on 200.
readyz() {
  if command -v curl >/dev/null; then
    curl -fsS -o /dev/null --max-time 1 "http://$1/readyz" 2>/dev/null
    return
  fi
  local status
  exec 3<>"/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null || return 1
  printf 'GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3
  read -r -t 1 _ status _ <&3 || true
  exec 3<&- 3>&-
  [ "$status" = 200 ]
}

# Wait (up to 30 s) for dsd to be ready before starting the gateway, so
# its first clients are not refused; the gateway itself also opens its MQTT
# listeners only once registered with dsd.
for _ in $(seq 300); do
  if ! kill -0 "$dsd" 2>/dev/null; then
    wait "$dsd" || status=$?
    echo "dsd exited before it was ready (status ${status:-0})" >&2
    rm -f "$dsdlog"
    exit "${status:-1}"
  fi
  http=$(sed -n 's/.*msg="dsd ready".* http=\([^ ]*\).*/\1/p' "$dsdlog" | head -n 1)
  if [ -n "$http" ] && readyz "$http"; then
    break
  fi
  sleep 0.1
done

"$bin/gateway" --config "$config" &
gateway=$!

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
