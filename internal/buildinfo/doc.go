// Package buildinfo says which build of Strata is running: the version, the
// commit, whether the work tree had uncommitted changes, and the Go version.
// Every program prints it for --version, and dsd and the gateway export it as
// the strata_build_info gauge (package buildmetric).
//
// The values come from the build information the Go toolchain embeds
// (runtime/debug.ReadBuildInfo): vcs.revision and vcs.modified, which
// `go build` records in a Git work tree, and the main module's version,
// which is a release tag when the binary was built from a tagged module
// (`go install github.com/stratamq/strata/...@v1.2.3`). `make release` sets
// the version from `git describe` with
//
//	-ldflags '-X github.com/stratamq/strata/internal/buildinfo.version=1.2.3'
//
// because `go build` in a work tree records a tag only when HEAD is exactly
// the tagged commit. Without a tag the version is 0.0.0-dev+<commit>
// (the first 12 hex digits of the commit), or 0.0.0-dev+unknown when the
// binary was built outside Git (or with -buildvcs=false).
package buildinfo
