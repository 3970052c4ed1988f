#!/usr/bin/env bash
# Builds the container image from dist/ (make release) with podman, else
# docker: one image per architecture, tagged <image>:<version>-<arch>, and
# <image>:<version> for this machine's architecture.
#
#   IMAGE       name (default strata)
#   IMAGE_ARCHS architectures (default: this machine's, as go env GOARCH)
#   ENGINE      podman or docker (default: whichever exists, podman first)
set -euo pipefail
cd "$(dirname "$0")/.."
engine=${ENGINE:-}
if [ -z "$engine" ]; then
  if command -v podman >/dev/null 2>&1; then engine=podman
  elif command -v docker >/dev/null 2>&1; then engine=docker
  else
    echo "image: neither podman nor docker found (apt-get install podman)" >&2
    exit 1
  fi
fi
if [ ! -f dist/VERSION ]; then
  echo "image: dist/VERSION not found: run make release first" >&2
  exit 1
fi
version=$(cat dist/VERSION)
image=${IMAGE:-strata}
host=$(go env GOARCH)
archs=${IMAGE_ARCHS:-$host}
# The image's timestamps are the commit's, so that podman builds of one
# commit give one image id.
extra=()
if [ "$engine" = podman ]; then
  extra=(--timestamp "${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}")
fi
for arch in $archs; do
  # "+" is not allowed in a tag (0.0.0-dev+<commit>).
  tag=$image:${version//+/_}-$arch
  "$engine" build "${extra[@]}" --platform "linux/$arch" -f packaging/container/Containerfile \
    --build-arg "VERSION=$version" --build-arg "TARGETARCH=$arch" -t "$tag" dist
  if [ "$arch" = "$host" ]; then
    "$engine" tag "$tag" "$image:${version//+/_}"
  fi
  echo "image: $tag" >&2
done
