#!/usr/bin/env bash
# Builds Strata's release: static binaries per platform, a tar.gz of each,
# SHA256SUMS, and the container image's build context (docs/install.md).
#
#   scripts/release.sh            # everything into dist/ (make release)
#   scripts/release.sh --version  # print the version a release would have
#
# Two runs on the same commit give byte-identical files: CGO_ENABLED=0,
# -trimpath, no VCS stamping (-buildvcs=false: the commit comes with -X,
# so a Git worktree, whose .git the go command does not recognise, and a
# plain clone give the same bytes), fixed GOAMD64/GOARM64, and archives with
# sorted names, the commit's time as every mtime, owner 0 and gzip -n.
#
# Environment (all optional):
#   OUT        output folder (default dist); emptied first
#   PLATFORMS  GOOS/GOARCH list (default "linux/amd64 linux/arm64")
#   PROGRAMS   program names (default: all seven)
#   VERSION    default: the Git tag (v1.2.3 -> 1.2.3), `git describe` between
#              tags (1.2.3-4-gabcdef123456), else 0.0.0-dev+<12 hex of commit>
#   COMMIT, MODIFIED, SOURCE_DATE_EPOCH
#              default: HEAD, whether `git status --porcelain` lists anything,
#              and HEAD's commit time
#   GO         the go command (default go)
set -euo pipefail
cd "$(dirname "$0")/.."

commit=${COMMIT:-$(git rev-parse HEAD)}
version=${VERSION:-}
if [ -z "$version" ]; then
  if tag=$(git describe --tags --match 'v[0-9]*' --abbrev=12 2>/dev/null); then
    version=${tag#v}
  else
    version=0.0.0-dev+${commit:0:12}
  fi
fi
if [ "${1:-}" = --version ]; then
  echo "$version"
  exit 0
fi
if [ -z "${MODIFIED:-}" ]; then
  if [ -z "$(git status --porcelain)" ]; then MODIFIED=false; else MODIFIED=true; fi
fi
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct "$commit")}
out=${OUT:-dist}
platforms=${PLATFORMS:-linux/amd64 linux/arm64}
programs=${PROGRAMS:-dsd gateway dstool dsbench mqttload mqttpasswd benchcmp}
go=${GO:-go}

if [ "$MODIFIED" = true ]; then
  echo "release: warning: the work tree has uncommitted changes; the binaries say modified=true" >&2
fi

pkg() {
  case $1 in
    dsd) echo ./dsd/cmd/dsd ;;
    gateway) echo ./gateway/cmd/gateway ;;
    *) echo "./tools/$1" ;;
  esac
}

bi=github.com/stratamq/strata/internal/buildinfo
ldflags="-s -w -X $bi.version=$version -X $bi.commit=$commit -X $bi.modified=$MODIFIED"

rm -rf "$out"
mkdir -p "$out"
# Every file gets the same mode whatever the umask, and the same mtime.
umask 022
for platform in $platforms; do
  goos=${platform%/*}
  goarch=${platform#*/}
  name=strata-$version-$goos-$goarch
  dir=$out/$name
  mkdir -p "$dir/systemd"
  for p in $programs; do
    echo "release: $name/$p" >&2
    CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch GOAMD64=v1 GOARM64=v8.0 GOFLAGS= \
      "$go" build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$dir/$p" "$(pkg "$p")"
  done
  cp strata.example.toml "$dir/strata.example.toml"
  cp packaging/systemd/*.service "$dir/systemd/"
  cp docs/install.md "$dir/INSTALL.md"
  tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$out" -cf - "$name" | gzip -9n >"$out/$name.tar.gz"
done

# The container image's build context besides the binaries
# (packaging/container/Containerfile; make image).
ctx=$out/container
mkdir -p "$ctx/etc/ssl/certs" "$ctx/etc/strata" "$ctx/var/lib/strata"
cp packaging/container/passwd packaging/container/group "$ctx/etc/"
cp packaging/container/strata.toml "$ctx/etc/strata/strata.toml"
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
if [ ! -f "$ca" ]; then
  echo "release: $ca not found: install Debian's ca-certificates (or set CA_BUNDLE)" >&2
  exit 1
fi
cp "$ca" "$ctx/etc/ssl/certs/ca-certificates.crt"
echo "$version" >"$out/VERSION"

(cd "$out" && find . -type f -path './strata-*' | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
echo "release: $version ($commit, modified=$MODIFIED) in $out" >&2
