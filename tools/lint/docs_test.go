package lint

import (
	"github.com/stratamq/strata/internal/testutil"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// architecturePackages returns the package paths named in the first column
// of the table under "## Packages" in docs/architecture.md.
func architecturePackages(t *testing.T, root string) []string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(src), "\n## Packages\n")
	if !ok {
		t.Fatal(`docs/architecture.md has no "## Packages" section`)
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	tick := regexp.MustCompile("`([^`]+)`")
	var names []string
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") || strings.TrimSpace(cells[1]) == "package" {
			continue
		}
		for _, m := range tick.FindAllStringSubmatch(cells[1], -1) {
			names = append(names, m[1])
		}
	}
	if len(names) == 0 {
		t.Fatal("docs/architecture.md: the package table names no package")
	}
	return names
}

// TestArchitectureTableNamesRealPackages: every package path in
// docs/architecture.md's table exists ("x/..." and "x/" name a folder), and
// every package under the product, tool and helper folders is in the table,
// so a newcomer's map of the code is the code.
func TestArchitectureTableNamesRealPackages(t *testing.T) {
	root := testutil.RepoRoot(t)
	names := architecturePackages(t, root)
	var folders []string // "x/..." patterns
	for _, n := range names {
		dir := strings.TrimSuffix(strings.TrimSuffix(n, "..."), "/")
		if strings.HasSuffix(n, "/...") || strings.HasSuffix(n, "/") {
			folders = append(folders, dir)
		}
		fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(dir)))
		if err != nil || !fi.IsDir() {
			t.Errorf("docs/architecture.md names package %s, which does not exist", n)
			continue
		}
		if dir == n && !hasGoFiles(t, filepath.Join(root, filepath.FromSlash(dir))) {
			t.Errorf("docs/architecture.md names package %s, a folder without Go files", n)
		}
	}
	for _, top := range []string{"config", "dsd", "gateway", "internal", "lts", "tools", "integration"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() {
				return nil
			}
			if name := d.Name(); name == "testdata" || strings.HasPrefix(name, ".") {
				return filepath.SkipDir
			}
			if !hasGoFiles(t, path) {
				return nil
			}
			rel, _ := filepath.Rel(root, path)
			rel = filepath.ToSlash(rel)
			if slices.Contains(names, rel) {
				return nil
			}
			for _, f := range folders {
				if rel == f || strings.HasPrefix(rel, f+"/") {
					return nil
				}
			}
			t.Errorf("package %s is missing from docs/architecture.md's package table", rel)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func hasGoFiles(t *testing.T, dir string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".go") {
			return true
		}
	}
	return false
}
