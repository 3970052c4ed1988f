package buildinfo

import (
	"flag"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// version, commit and modified are set with -ldflags -X (package doc):
// version by `make release`, commit and modified ("true" or "false") by
// `make build` and `make release`, because `go build` records no VCS
// information in a Git worktree (its .git is a file, and the go command
// looks for a .git directory). Empty in every other build.
var version, commit, modified string

// Info describes one build.
type Info struct {
	// Version is the release version without a leading "v" (1.2.3, or
	// 1.2.3-4-gabcdef123456 between tags), else 0.0.0-dev+<commit>.
	Version string
	// Commit is the full Git commit (vcs.revision), "" when unknown.
	Commit string
	// Modified reports uncommitted changes in the work tree at build time
	// (vcs.modified).
	Modified bool
	// GoVersion is the toolchain that built the binary (go1.26.8).
	GoVersion string
}

var (
	once   sync.Once
	cached Info
)

// Get returns the running binary's build information.
func Get() Info {
	once.Do(func() {
		bi, ok := debug.ReadBuildInfo()
		if !ok {
			bi = nil
		}
		cached = resolve(ldflags{version, commit, modified}, bi)
	})
	return cached
}

// pseudoVersion matches the version `go build` records for an untagged
// commit (v0.0.0-20261101120000-abcdef123456, or with a +dirty suffix):
// it names a commit, not a release.
var pseudoVersion = regexp.MustCompile(`-(0\.)?\d{14}-[0-9a-f]{12}(\+dirty)?$`)

// ldflags are the values set with -X; empty when not set.
type ldflags struct{ version, commit, modified string }

// resolve computes an Info from the -X values and the embedded build
// information (may be nil); the -X values win.
func resolve(ld ldflags, bi *debug.BuildInfo) Info {
	info := Info{GoVersion: runtime.Version()}
	mainVersion := ""
	if bi != nil {
		info.GoVersion = bi.GoVersion
		mainVersion = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if ld.commit != "" {
		info.Commit = ld.commit
	}
	if ld.modified != "" {
		info.Modified = ld.modified == "true"
	}
	switch {
	case ld.version != "":
		info.Version = strings.TrimPrefix(ld.version, "v")
	case mainVersion != "" && mainVersion != "(devel)" && !pseudoVersion.MatchString(mainVersion):
		info.Version = strings.TrimPrefix(mainVersion, "v")
	default:
		info.Version = "0.0.0-dev+" + shortCommit(info.Commit)
	}
	return info
}

func shortCommit(c string) string {
	switch {
	case c == "":
		return "unknown"
	case len(c) > 12:
		return c[:12]
	}
	return c
}

// String is the one line that --version prints after the program name:
//
//	1.2.3 commit=3f2a… modified=false go=go1.26.8 linux/amd64
func (i Info) String() string {
	commit := i.Commit
	if commit == "" {
		commit = "unknown"
	}
	return fmt.Sprintf("%s commit=%s modified=%t go=%s %s/%s", i.Version, commit, i.Modified, i.GoVersion, runtime.GOOS, runtime.GOARCH)
}

// Fprint writes "<program> <Info>" and a newline to w: the answer to
// --version.
func Fprint(w io.Writer, program string) {
	fmt.Fprintf(w, "%s %s\n", program, Get())
}

// VersionFlag registers --version on fs; when the returned bool is true
// after fs.Parse, the program calls Fprint to standard output and exits 0.
func VersionFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("version", false, "print the version, commit and Go version, and exit")
}
