#!/usr/bin/env bash
# Fails when the committed generated code in gen/ differs from what buf
# generates from proto/ now (a .proto edited without `make proto`).
set -euo pipefail
buf=${1:?usage: proto-check.sh "<buf command>"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$buf generate -o "$tmp"
if ! diff -r gen "$tmp/gen" >"$tmp/diff"; then
  cat "$tmp/diff" >&2
  echo "proto-check: gen/ is stale; run 'make proto' and commit the result" >&2
  exit 1
fi
echo "proto-check: gen/ is current"
