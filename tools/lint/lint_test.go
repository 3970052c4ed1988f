package lint

import (
	"bufio"
	"bytes"
	"github.com/stratamq/strata/internal/testutil"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// goFiles lists the module's .go files, skipping data and hidden folders.
func goFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin" || name == "data" || name == "buildtools") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestGofmt(t *testing.T) {
	root := testutil.RepoRoot(t)
	args := append([]string{"-l"}, goFiles(t, root)...)
	if out := strings.TrimSpace(run(t, root, "gofmt", args...)); out != "" {
		t.Errorf("gofmt would change these files:\n%s", out)
	}
}

func TestGoVet(t *testing.T) {
	root := testutil.RepoRoot(t)
	run(t, root, "go", "vet", "./...")
}

func TestStaticcheck(t *testing.T) {
	root := testutil.RepoRoot(t)
	run(t, root, "go", "tool", "staticcheck", "./...")
}

// forbiddenDeps says, per package pattern, which import path prefixes may not
// appear anywhere in its transitive dependencies (STYLE.md rule 1).
var forbiddenDeps = []struct {
	pkgs      string
	forbidden []string
	why       string
}{
	{"./lts/...", []string{"net", "google.golang.org/grpc", "github.com/cockroachdb/pebble", "github.com/eclipse/paho.golang", "github.com/stratamq/strata/gateway", "github.com/stratamq/strata/dsd"},
		"lts is pure: topic levels and byte keys, no I/O, no MQTT, no storage engine"},
	{"./gateway/packet/...", []string{"net", "google.golang.org/grpc", "github.com/cockroachdb/pebble", "github.com/stratamq/strata/dsd"},
		"the MQTT codec is pure: bytes in, bytes out"},
	{"./gateway/session/...", []string{"net", "google.golang.org/grpc", "github.com/cockroachdb/pebble", "github.com/stratamq/strata/dsd"},
		"the session core is a deterministic state machine: events in, actions out; the driver does the I/O"},
	{"./gen/strata/storage/...", []string{"net", "google.golang.org/grpc"},
		"persisted formats must not pull in gRPC or the network"},
	{"./dsd/storage/...", []string{"google.golang.org/grpc", "github.com/stratamq/strata/gateway", "github.com/stratamq/strata/gen/strata/dsd"},
		"storage knows lts and pebble, not the API"},
	{"./gen/strata/cluster/...", []string{"net", "google.golang.org/grpc"},
		"the metadata group's commands and snapshots are persisted formats"},
	{"./dsd/placement/...", []string{"net", "google.golang.org/grpc", "github.com/cockroachdb/pebble", "go.etcd.io/raft"},
		"the allocation planner is pure: sites in, placements and transitions out"},
	{"./dsd/meta/...", []string{"net", "google.golang.org/grpc", "github.com/cockroachdb/pebble", "go.etcd.io/raft"},
		"the metadata state machine is pure: commands in, state out; dsd/cluster drives it"},
	{"./dsd/raftlog/...", []string{"google.golang.org/grpc", "github.com/stratamq/strata/dsd/storage"},
		"the raft log store knows Pebble and raft, not gRPC or the shards"},
	{"./dsd/cluster/...", []string{"github.com/stratamq/strata/dsd/storage", "github.com/stratamq/strata/dsd/server", "github.com/stratamq/strata/gateway"},
		"the metadata group runs beside the storage (sharing its engine), not on top of it"},
	{"./dsd/client/...", []string{"github.com/stratamq/strata/dsd/storage", "github.com/stratamq/strata/dsd/server", "github.com/cockroachdb/pebble"},
		"the client speaks only the generated API"},
}

func TestForbiddenImports(t *testing.T) {
	root := testutil.RepoRoot(t)
	for _, rule := range forbiddenDeps {
		out := run(t, root, "go", "list", "-e", "-deps", "-f", "{{.ImportPath}}", rule.pkgs)
		for _, dep := range strings.Fields(out) {
			for _, bad := range rule.forbidden {
				if dep == bad || strings.HasPrefix(dep, bad+"/") {
					t.Errorf("%s depends on %s: %s", rule.pkgs, dep, rule.why)
				}
			}
		}
	}
}

// TestGatewayUsesOnlyTheAPI: the gateway reaches dsd only through the
// generated gRPC client (and dsd/client, a thin wrapper of it), never through
// dsd's storage or server packages.
func TestGatewayUsesOnlyTheAPI(t *testing.T) {
	root := testutil.RepoRoot(t)
	out := run(t, root, "go", "list", "-e", "-deps", "-f", "{{.ImportPath}}", "./gateway/...")
	for _, dep := range strings.Fields(out) {
		if strings.HasPrefix(dep, "github.com/stratamq/strata/dsd/") && dep != "github.com/stratamq/strata/dsd/client" {
			t.Errorf("gateway depends on %s; use the gRPC API in gen/strata/dsd instead", dep)
		}
	}
}

const maxLines = 1500

func TestFileSize(t *testing.T) {
	root := testutil.RepoRoot(t)
	for _, f := range goFiles(t, root) {
		if strings.HasSuffix(f, ".pb.go") || strings.HasSuffix(f, "_test.go") {
			continue
		}
		n := countLines(t, f)
		if n > maxLines {
			rel, _ := filepath.Rel(root, f)
			t.Errorf("%s has %d lines (limit %d): split it by concept (STYLE.md rule 12)", rel, n, maxLines)
		}
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		n++
	}
	return n
}

// grepRules are source patterns allowed only in some places.
var grepRules = []struct {
	re      *regexp.Regexp
	allowIn []string // path prefixes relative to the root
	tests   bool     // whether _test.go files are checked too
	why     string
}{
	{regexp.MustCompile(`\bstatus\.(Error|Errorf|New|Newf)\(`), []string{"dsd/server/", "gen/"}, false,
		"dsd turns errors into gRPC status in one place (dsd/server)"},
	{regexp.MustCompile(`\batomic\.(Load|Store|Add|Swap|CompareAndSwap)(Int32|Int64|Uint32|Uint64|Uintptr|Pointer)\(`), nil, true,
		"use the typed atomics (atomic.Int64 and friends)"},
	{regexp.MustCompile(`\btime\.Sleep\(`), []string{"integration/", "tools/", "dsd/", "gateway/server/", "internal/testutil/wait/"}, true,
		"pure cores are tested without sleeps; wait on conditions"},
}

func TestGrepRules(t *testing.T) {
	root := testutil.RepoRoot(t)
	for _, f := range goFiles(t, root) {
		rel, _ := filepath.Rel(root, f)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, "tools/lint/") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		isTest := strings.HasSuffix(rel, "_test.go")
	rules:
		for _, rule := range grepRules {
			if isTest && !rule.tests {
				continue
			}
			for _, p := range rule.allowIn {
				if strings.HasPrefix(rel, p) {
					continue rules
				}
			}
			if loc := rule.re.FindIndex(src); loc != nil {
				line := bytes.Count(src[:loc[0]], []byte("\n")) + 1
				t.Errorf("%s:%d: %q: %s", rel, line, src[loc[0]:loc[1]], rule.why)
			}
		}
	}
}

// TestTestHelpersStayInTests: the packages that programs and tools are
// built from never depend on test helpers (internal/testutil/...), on the
// multi-process test package (integration) or on the testing package, so
// no binary links test code. Tests (_test.go files) may import anything.
func TestTestHelpersStayInTests(t *testing.T) {
	root := testutil.RepoRoot(t)
	var product []string
	for _, pkg := range strings.Fields(run(t, root, "go", "list", "./...")) {
		rel := strings.TrimPrefix(pkg, "github.com/stratamq/strata/")
		if rel == "integration" || strings.HasPrefix(rel, "integration/") || rel == "internal/testutil" ||
			strings.HasPrefix(rel, "internal/testutil/") || rel == "tools/lint" {
			continue
		}
		product = append(product, pkg)
	}
	args := append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, product...)
	for _, dep := range strings.Fields(run(t, root, "go", args...)) {
		rel := strings.TrimPrefix(dep, "github.com/stratamq/strata/")
		if dep == "testing" || rel == "integration" || strings.HasPrefix(rel, "integration/") ||
			rel == "internal/testutil" || strings.HasPrefix(rel, "internal/testutil/") {
			t.Errorf("a product or tool package depends on %s (go list -deps); test helpers belong to _test.go files", dep)
		}
	}
}

// TestReleaseHasNoFailpoints: internal/failpoint kills the process only
// when compiled with the failpoints build tag; release builds must not set
// it, and the integration harness must (else its crash tests arm nothing).
func TestReleaseHasNoFailpoints(t *testing.T) {
	root := testutil.RepoRoot(t)
	for _, f := range []string{"scripts/release.sh", "Makefile", "packaging"} {
		err := filepath.WalkDir(filepath.Join(root, f), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(src, []byte("failpoints")) {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s mentions the failpoints build tag: release binaries are built without it", rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	harness, err := os.ReadFile(filepath.Join(root, "integration", "harness.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(harness, []byte(`"-tags", "failpoints"`)) {
		t.Error("integration/harness.go does not build with -tags failpoints: its failpoints would do nothing")
	}
}
