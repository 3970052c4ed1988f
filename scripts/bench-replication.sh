#!/usr/bin/env bash
# bench-replication.sh: what replication costs and what more sites give, on
# one machine. Three layouts, each a fresh data directory, one gateway in
# front (gateway --dsd A,B,C routes every Store to its shard's leader):
#
#   1site    one dsd                        (n_sites 1, replication_factor 1)
#   3sites   three dsd, each shard on one   (n_sites 3, replication_factor 1)
#   3sites3  three dsd, each shard on three (n_sites 3, replication_factor 3)
#
# Each runs `mqttload --qos 1 --publishers P --inflight 1 --payload 100
# --subscribers 0` for DURATION and prints the acknowledged rate and, per
# site, the WAL fsyncs per acknowledged message (strata_ds_wal_fsyncs_total
# before and after). On one machine three sites share its disk and cores:
# the figures show the cost of the protocol, not the gain of more machines.
#
# Usage: scripts/bench-replication.sh [BIN] [DURATION] [LAYOUTS...]
#   PUBLISHERS (default 100), RUNS (default 1) from the environment.
set -euo pipefail

bin=${1:-bin}
dur=${2:-10s}
shift $(($# < 2 ? $# : 2))
layouts=("$@")
[ ${#layouts[@]} -gt 0 ] || layouts=(1site 3sites 3sites3)
pubs=${PUBLISHERS:-100}
runs=${RUNS:-1}

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-replication.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'cleanup; rm -rf "$work"' EXIT
trap 'exit 1' INT TERM

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ready URL: wait up to 30 s for GET URL to answer 200.
ready() {
  for _ in $(seq 300); do
    if curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "not ready: $1" >&2
  return 1
}

# metric HTTP NAME: the sum of a counter's samples on one dsd.
metric() {
  curl -fsS --max-time 2 "http://$1/metrics" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.0f\n", s }'
}

run_layout() {
  local layout=$1 run=$2 n rf
  case $layout in
    1site) n=1 rf=1 ;;
    3sites) n=3 rf=1 ;;
    3sites3) n=3 rf=3 ;;
    *) echo "unknown layout $layout" >&2; return 1 ;;
  esac
  local dir=$work/$layout-$run
  mkdir -p "$dir"
  cat >"$dir/dsd.toml" <<EOF
[durable_storage.messages]
n_sites = $n
replication_factor = $rf
EOF
  local grpc=() http=()
  for i in $(seq 0 $((n - 1))); do
    local g h
    g=127.0.0.1:$(freeport) h=127.0.0.1:$(freeport)
    grpc+=("$g") http+=("$h")
    local join=()
    [ "$i" -gt 0 ] && join=(--join "${grpc[0]}")
    "$bin/dsd" --config "$dir/dsd.toml" --data-dir "$dir/site$i" --grpc-listen "$g" --http-listen "$h" \
      --log-level warn "${join[@]}" 2>"$dir/dsd$i.log" &
    pids+=($!)
    if [ "$i" -eq 0 ]; then ready "http://$h/healthz"; fi
  done
  for h in "${http[@]}"; do ready "http://$h/readyz"; done
  local mqtt=127.0.0.1:$(freeport) ghttp=127.0.0.1:$(freeport)
  "$bin/gateway" --dsd "$(IFS=,; echo "${grpc[*]}")" --mqtt-listen "$mqtt" --http-listen "$ghttp" --log-level warn \
    2>"$dir/gateway.log" &
  pids+=($!)
  ready "http://$ghttp/readyz"
  local before=()
  for h in "${http[@]}"; do before+=("$(metric "$h" strata_ds_wal_fsyncs_total)"); done
  "$bin/mqttload" --addr "$mqtt" --qos 1 --publishers "$pubs" --inflight 1 --payload 100 --subscribers 0 \
    --duration "$dur" --json >"$dir/load.json" 2>"$dir/load.log"
  local acked rate
  acked=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["acked"])' "$dir/load.json")
  rate=$(python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["publish_msgs_per_s"])' "$dir/load.json")
  local per=()
  for i in "${!http[@]}"; do
    local after
    after=$(metric "${http[$i]}" strata_ds_wal_fsyncs_total)
    per+=("$(python3 -c 'import sys; a, b, n = map(float, sys.argv[1:]); print("%.3f" % ((a - b) / n if n else 0))' "$after" "${before[$i]}" "$acked")")
  done
  printf '%-8s run %d: %7s acked msgs/s (%s acked), WAL fsyncs per acked message per site: %s\n' \
    "$layout" "$run" "$rate" "$acked" "${per[*]}"
  cleanup
}

echo "bench-replication: $pubs publishers x 1 in flight, 100-byte QoS 1, $dur per run; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$runs"); do
  for layout in "${layouts[@]}"; do
    run_layout "$layout" "$run"
  done
done
