package buildinfo

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	const rev = "3f2a9c1e0b7d44aa55bb66cc77dd88ee99ff0011"
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tc := range []struct {
		name      string
		ld        ldflags
		bi        *debug.BuildInfo
		want      string
		modified  bool
		commit    string
		goVersion string
	}{
		{name: "no build info", want: "0.0.0-dev+unknown"},
		{name: "devel without vcs", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			want: "0.0.0-dev+unknown", goVersion: "go1.26.8"},
		{name: "untagged commit", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261101120000-3f2a9c1e0b7d"}, Settings: vcs("false")},
			want: "0.0.0-dev+3f2a9c1e0b7d", commit: rev, goVersion: "go1.26.8"},
		{name: "untagged dirty", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261101120000-3f2a9c1e0b7d+dirty"}, Settings: vcs("true")},
			want: "0.0.0-dev+3f2a9c1e0b7d", modified: true, commit: rev, goVersion: "go1.26.8"},
		{name: "after a tag", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.4-0.20261101120000-3f2a9c1e0b7d"}, Settings: vcs("false")},
			want: "0.0.0-dev+3f2a9c1e0b7d", commit: rev, goVersion: "go1.26.8"},
		{name: "tagged module", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}},
			want: "1.2.3", goVersion: "go1.26.8"},
		{name: "tagged work tree", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: vcs("false")},
			want: "1.2.3", commit: rev, goVersion: "go1.26.8"},
		{name: "ldflags win", ld: ldflags{version: "v1.3.0-2-g3f2a9c1e0b7d"}, bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs("false")},
			want: "1.3.0-2-g3f2a9c1e0b7d", commit: rev, goVersion: "go1.26.8"},
		{name: "worktree build with -X commit", ld: ldflags{commit: rev, modified: "true"}, bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			want: "0.0.0-dev+3f2a9c1e0b7d", modified: true, commit: rev, goVersion: "go1.26.8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := resolve(tc.ld, tc.bi)
			if got.Version != tc.want || got.Modified != tc.modified || got.Commit != tc.commit {
				t.Errorf("resolve = %+v, want version %q modified %t commit %q", got, tc.want, tc.modified, tc.commit)
			}
			if tc.goVersion != "" && got.GoVersion != tc.goVersion {
				t.Errorf("GoVersion = %q, want %q", got.GoVersion, tc.goVersion)
			}
			if got.GoVersion == "" {
				t.Error("GoVersion is empty")
			}
		})
	}
}

func TestFprint(t *testing.T) {
	var b bytes.Buffer
	Fprint(&b, "dsd")
	line := b.String()
	for _, want := range []string{"dsd " + Get().Version + " ", " commit=", " modified=", " go=go1."} {
		if !strings.Contains(line, want) {
			t.Errorf("--version line %q lacks %q", line, want)
		}
	}
	if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		t.Errorf("--version prints one line, got %q", line)
	}
}
