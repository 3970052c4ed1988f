package release

import (
	"bytes"
	"github.com/stratamq/strata/internal/testutil"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func skipUnderRace(t *testing.T) {
	t.Helper()
	if raceOn {
		t.Skip("builds and runs release binaries, which -race does not instrument; covered by the run without -race")
	}
}

// command runs name in dir with env added and returns its standard output;
// it fails the test with the combined output on error.
func command(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// hostCABundle is where release.sh takes the image's CA certificates from.
const hostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// release runs scripts/release.sh from src into out for this machine's
// architecture with the given programs, and returns the version.
func release(t *testing.T, src, out, programs string, env ...string) string {
	t.Helper()
	env = append([]string{"OUT=" + out, "PLATFORMS=linux/" + runtime.GOARCH, "PROGRAMS=" + programs}, env...)
	if _, err := os.Stat(hostCABundle); err != nil {
		// The image takes the build machine's CA certificates; a machine
		// without Debian's ca-certificates can still test the rest.
		ca := filepath.Join(t.TempDir(), "ca-certificates.crt")
		if err := os.WriteFile(ca, []byte("# stand-in: "+hostCABundle+" is missing on the test machine\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s missing: the release uses a stand-in CA bundle", hostCABundle)
		env = append(env, "CA_BUNDLE="+ca)
	}
	command(t, src, env, "./scripts/release.sh")
	v, err := os.ReadFile(filepath.Join(out, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(v))
}

// headCommit is the commit being tested and whether the work tree differs
// from it, as release.sh computes them.
func headCommit(t *testing.T, root string) (commit string, modified bool) {
	t.Helper()
	commit = strings.TrimSpace(command(t, root, nil, "git", "rev-parse", "HEAD"))
	modified = strings.TrimSpace(command(t, root, nil, "git", "status", "--porcelain")) != ""
	return commit, modified
}

// copySource copies the files Git knows (tracked, and untracked unless
// ignored: the work tree as it is, uncommitted changes included) to dst.
func copySource(t *testing.T, root, dst string) {
	t.Helper()
	list := command(t, root, nil, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	for _, rel := range strings.Split(strings.TrimRight(list, "\x00"), "\x00") {
		src := filepath.Join(root, rel)
		fi, err := os.Lstat(src)
		if os.IsNotExist(err) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// tree maps every file under dir to its bytes.
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestReleaseReproducible builds one program twice, the second time from a
// copy of the source at another path and without .git (so neither the
// checkout's path nor its kind — clone or worktree — may leak into the
// bytes), and compares every file release.sh writes: binary, archive,
// SHA256SUMS and the image's build context.
func TestReleaseReproducible(t *testing.T) {
	skipUnderRace(t)
	root := testutil.RepoRoot(t)
	commit, modified := headCommit(t, root)
	epoch := strings.TrimSpace(command(t, root, nil, "git", "log", "-1", "--format=%ct"))
	env := []string{"COMMIT=" + commit, "MODIFIED=" + map[bool]string{true: "true", false: "false"}[modified], "SOURCE_DATE_EPOCH=" + epoch}

	outA := filepath.Join(t.TempDir(), "dist")
	vA := release(t, root, outA, "mqttpasswd", env...)

	copyDir := filepath.Join(t.TempDir(), "elsewhere", "strata")
	copySource(t, root, copyDir)
	outB := filepath.Join(t.TempDir(), "dist")
	vB := release(t, copyDir, outB, "mqttpasswd", append(env, "VERSION="+vA)...)
	if vA != vB {
		t.Fatalf("versions %q and %q", vA, vB)
	}

	a, b := tree(t, outA), tree(t, outB)
	if len(a) == 0 {
		t.Fatal("release wrote nothing")
	}
	for name, ba := range a {
		bb, ok := b[name]
		switch {
		case !ok:
			t.Errorf("%s only in the first build", name)
		case !bytes.Equal(ba, bb):
			t.Errorf("%s differs between two builds of one commit (%d and %d bytes)", name, len(ba), len(bb))
		}
	}
	for name := range b {
		if _, ok := a[name]; !ok {
			t.Errorf("%s only in the second build", name)
		}
	}
	bin := filepath.Join("strata-"+vA+"-linux-"+runtime.GOARCH, "mqttpasswd")
	if _, ok := a[bin]; !ok {
		t.Fatalf("%s missing from the release", bin)
	}
	if !strings.Contains(string(a["SHA256SUMS"]), "  "+bin+"\n") {
		t.Errorf("SHA256SUMS does not list %s:\n%s", bin, a["SHA256SUMS"])
	}

	// The binary is static, built with -trimpath, and says which build it is.
	info := command(t, root, nil, "go", "version", "-m", filepath.Join(outA, bin))
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath=true"} {
		if !strings.Contains(info, want) {
			t.Errorf("go version -m lacks %s:\n%s", want, info)
		}
	}
	if strings.Contains(info, root) {
		t.Errorf("the binary holds the source path %s", root)
	}
	if runtime.GOOS == "linux" {
		got := command(t, root, nil, filepath.Join(outA, bin), "--version")
		want := "mqttpasswd " + vA + " commit=" + commit + " modified=" + map[bool]string{true: "true", false: "false"}[modified] + " go=go"
		if !strings.HasPrefix(got, want) {
			t.Errorf("--version = %q, want the prefix %q", got, want)
		}
	}
}
