// Package release holds the tests of Strata's packaging (docs/install.md):
// `make release` builds byte-identical binaries and archives from one
// commit, the container image built from them holds a working set of dsd and
// the gateway (run here from the image's exported file system, since
// containers cannot run on every machine), the systemd units pass
// `systemd-analyze verify`. The code under test is scripts/release.sh,
// scripts/image.sh, packaging/container and packaging/systemd.
package release
