package release

import (
	"bytes"
	"github.com/stratamq/strata/internal/testutil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// unitBinDir is where the units expect the binaries (docs/install.md).
const unitBinDir = "/usr/local/bin/"

// TestSystemdUnits runs `systemd-analyze verify` on packaging/systemd. It
// checks each ExecStart binary exists and is executable, so the test points
// the units at stand-in executables in a temporary folder; anything verify
// prints (an unknown key is only a warning there) fails the test.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd; .ci/run tries to install it): the units were not verified")
	}
	root := testutil.RepoRoot(t)
	units, err := filepath.Glob(filepath.Join(root, "packaging", "systemd", "*.service"))
	if err != nil {
		t.Fatal(err)
	}
	if len(units) != 2 {
		t.Fatalf("packaging/systemd holds %d units, want strata-dsd.service and strata-gateway.service", len(units))
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin") + "/"
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, u := range units {
		src, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := string(src)
		for _, want := range []string{"Type=notify", "Restart=on-failure", "LimitNOFILE=1048576", "NoNewPrivileges=yes",
			"ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet=\n", "DynamicUser=yes"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %q", filepath.Base(u), strings.TrimSpace(want))
			}
		}
		for _, line := range strings.Split(text, "\n") {
			if p, ok := strings.CutPrefix(line, "ExecStart="+unitBinDir); ok {
				name := strings.Fields(p)[0]
				if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
		path := filepath.Join(tmp, filepath.Base(u))
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, unitBinDir, bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	cmd := exec.Command(analyze, append([]string{"verify", "--man=no"}, paths...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err != nil || out.Len() > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out.String())
	}
}
