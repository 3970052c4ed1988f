#!/usr/bin/env bash
# Profiles one offline-queue replay and nothing else: starts dsd and a
# gateway from BIN (both with --pprof), has an unmodified
# `mosquitto_sub -V mqttv5 -c` subscribe and leave, queues QUEUED messages for
# it with mqttload, then takes a CPU profile of each process while the same
# mosquitto_sub reconnects and prints them all. It prints the replay rate,
# the CPU per replayed message of dsd and of the gateway (from
# /proc/<pid>/stat around the replay) and the read and write system calls
# per message (/proc/<pid>/io), and leaves dsd.pprof and gateway.pprof in
# OUT for `go tool pprof`. docs/benchmarks.md has figures.
#
#   scripts/replayprof.sh BIN OUT TOPICS [QUEUED]
#
# TOPICS is 1 (one topic, bench/replay-sub, filled by 8 publishers with one
# in flight each, as benchcmp's replay-sub) or 64 (sensors/N/temp for 64
# devices under sensors/+/temp, 8 publishers with 8 in flight). QUEUED
# defaults to 100000; PROFSECS (default 6) is the profile's length and must
# cover the replay.
set -euo pipefail
bin=$1
out=$2
topics=$3
queued=${4:-100000}
profsecs=${PROFSECS:-6}

mkdir -p "$out"
dir=$(mktemp -d)
dsd=
gw=
stop() {
  for p in $gw $dsd; do
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$dir"
}
trap stop EXIT

# ready LOG LINE waits for a "... ready" log line and prints it.
ready() {
  for _ in $(seq 100); do
    if grep -q "msg=\"$2 ready\"" "$1"; then
      grep "msg=\"$2 ready\"" "$1"
      return
    fi
    sleep 0.1
  done
  echo "replayprof: no '$2 ready' in $1" >&2
  exit 1
}
attr() { grep -o " $1=[^ ]*" | head -1 | cut -d= -f2; }

"$bin/dsd" --data-dir "$dir/data" --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --pprof 2>"$dir/dsd.log" &
dsd=$!
line=$(ready "$dir/dsd.log" dsd)
grpc=$(attr grpc <<<"$line")
dsdhttp=$(attr http <<<"$line")
"$bin/gateway" --dsd "$grpc" --mqtt-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --pprof 2>"$dir/gateway.log" &
gw=$!
line=$(ready "$dir/gateway.log" gateway)
addr=$(attr tcp.default <<<"$line")
gwhttp=$(attr http <<<"$line")

if [ "$topics" = 1 ]; then
  filter=bench/replay-sub
  fill=(--topic bench/replay-sub --inflight 1)
else
  filter='sensors/+/temp'
  fill=(--devices 64 --inflight 8)
fi
sub=(-h "${addr%:*}" -p "${addr##*:}" -V mqttv5 -c -i replayprof -x 3600 -q 1 -t "$filter")
mosquitto_sub "${sub[@]}" -E
"$bin/mqttload" --addr "$addr" --json --progress 0 --qos 1 --publishers 8 "${fill[@]}" --subscribers 0 \
  --count $((queued / 8)) --duration 0 >"$dir/fill.json"
sleep 1 # the fill's last commits and the lazy session commits settle

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
io() { awk '/^syscr|^syscw/ {printf "%s ", $2}' "/proc/$1/io"; }
c0d=$(cpu "$dsd"); c0g=$(cpu "$gw"); i0d=$(io "$dsd"); i0g=$(io "$gw")
curl -s -o "$out/dsd.pprof" "http://$dsdhttp/debug/pprof/profile?seconds=$profsecs" &
pd=$!
curl -s -o "$out/gateway.pprof" "http://$gwhttp/debug/pprof/profile?seconds=$profsecs" &
pg=$!
sleep 0.2
t0=$(date +%s.%N)
mosquitto_sub "${sub[@]}" -C "$queued" >/dev/null
t1=$(date +%s.%N)
c1d=$(cpu "$dsd"); c1g=$(cpu "$gw"); i1d=$(io "$dsd"); i1g=$(io "$gw")
wait "$pd" "$pg"

echo "$i0d $i1d $i0g $i1g" | awk -v q="$queued" '{printf "system calls per message: dsd %.2f reads, %.2f writes; gateway %.2f reads, %.2f writes\n", ($3-$1)/q, ($4-$2)/q, ($7-$5)/q, ($8-$6)/q}'
awk -v q="$queued" -v t0="$t0" -v t1="$t1" -v d=$((c1d - c0d)) -v g=$((c1g - c0g)) -v hz="$(getconf CLK_TCK)" 'BEGIN {
  printf "replay %d msgs in %.3f s = %.0f msgs/s; CPU dsd %.2f us/msg, gateway %.2f us/msg\n", q, t1-t0, q/(t1-t0), d/hz/q*1e6, g/hz/q*1e6 }'
