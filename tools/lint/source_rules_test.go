package lint

import (
	"fmt"
	"github.com/stratamq/strata/internal/testutil"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The rules in this file read the syntax tree of each hand-written Go file
// (gen/ and tools/lint itself are skipped). Each names the file:line it
// refuses and how to fix it; docs/testing.md lists them.
//
//   - panicNeedsInvariant (STYLE.md rule 9): a product panic (outside
//     _test.go files) has a comment starting "// Invariant:" on the line of
//     the panic or in the comment block directly above it, naming the
//     invariant that broke. Input from the network or the disk never panics.
//   - errorfWraps (STYLE.md rule 8): fmt.Errorf does not format an error
//     (an argument named err, or ending in Err/err) with %v or %s: wrap it
//     with %w so that errors.Is and errors.As see it. Where not wrapping is
//     deliberate (the cause is detail that callers must not classify by),
//     the call carries "// lint:nowrap <reason>" on one of its lines or in
//     the comment block directly above.
//   - sleepModels (STYLE.md rule 4): time.Sleep appears only in _test.go
//     files (and internal/testutil/wait, the polling helper), and there with
//     a comment starting "// models:" on the same line or in the comment
//     block directly above, saying which fault or pacing the sleep models.
//     A test that sleeps to wait for something waits on the condition
//     instead (wait.For or a channel).

// finding is one violation: where and what.
type finding struct {
	line int
	msg  string
}

// sourceRule checks one parsed file. rel is the slash-separated path from
// the module root.
type sourceRule struct {
	name  string
	check func(rel string, fset *token.FileSet, f *ast.File, lines []string) []finding
}

var sourceRules = []sourceRule{
	{"panicNeedsInvariant", checkPanics},
	{"errorfWraps", checkErrorf},
	{"sleepModels", checkSleeps},
}

func TestSourceRules(t *testing.T) {
	root := testutil.RepoRoot(t)
	for _, path := range goFiles(t, root) {
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, "gen/") || strings.HasPrefix(rel, "tools/lint/") {
			continue
		}
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range checkSource(t, rel, src) {
			t.Error(e)
		}
	}
}

// checkSource runs every source rule on one file and returns the
// violations as "file:line: rule: message".
func checkSource(t *testing.T, rel string, src []byte) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, rel, src, parser.ParseComments)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	lines := strings.Split(string(src), "\n")
	var out []string
	for _, r := range sourceRules {
		for _, v := range r.check(rel, fset, f, lines) {
			out = append(out, fmt.Sprintf("%s:%d: %s: %s", rel, v.line, r.name, v.msg))
		}
	}
	return out
}

// hasMarker reports whether line n (1-based) carries a // comment starting
// with marker, or whether the block of // comment lines directly above it
// has a line starting with marker.
func hasMarker(lines []string, n int, marker string) bool {
	if n < 1 || n > len(lines) {
		return false
	}
	if i := strings.Index(lines[n-1], "// "); i >= 0 && strings.HasPrefix(lines[n-1][i:], marker) {
		return true
	}
	for i := n - 2; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, "//") {
			break
		}
		if strings.HasPrefix(l, marker) {
			return true
		}
	}
	return false
}

func isTestFile(rel string) bool { return strings.HasSuffix(rel, "_test.go") }

const invariantMarker = "// Invariant:"

func checkPanics(rel string, fset *token.FileSet, f *ast.File, lines []string) []finding {
	if isTestFile(rel) {
		return nil
	}
	var out []finding
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		if id, ok := call.Fun.(*ast.Ident); !ok || id.Name != "panic" {
			return true
		}
		line := fset.Position(call.Pos()).Line
		if !hasMarker(lines, line, invariantMarker) {
			out = append(out, finding{line, `panic without an "// Invariant: ..." comment (same line or directly above) naming the invariant that broke; return an error for anything input can cause (STYLE.md rule 9)`})
		}
		return true
	})
	return out
}

// errName matches the name of a variable or field that holds an error.
var errName = regexp.MustCompile(`(^err|Err|[a-z0-9_]err)$`)

const nowrapMarker = "// lint:nowrap "

func checkErrorf(rel string, fset *token.FileSet, f *ast.File, lines []string) []finding {
	var out []finding
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || !isSelector(call.Fun, "fmt", "Errorf") || len(call.Args) == 0 {
			return true
		}
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true // a computed format: not checked
		}
		format := lit.Value
		verbs, ok := formatVerbs(format)
		if !ok {
			return true
		}
		for i, v := range verbs {
			if v != 'v' && v != 's' || i+1 >= len(call.Args) {
				continue
			}
			name := exprName(call.Args[i+1])
			if name == "" || !errName.MatchString(name) || strings.HasSuffix(strings.ToLower(name), "stderr") {
				continue
			}
			first, last := fset.Position(call.Pos()).Line, fset.Position(call.End()).Line
			if optedOut(lines, first, last) {
				continue
			}
			out = append(out, finding{first, fmt.Sprintf("fmt.Errorf formats the error %s with %%%c: wrap it with %%w, or say why not with %q on the call (STYLE.md rule 8)", name, v, nowrapMarker+"<reason>")})
		}
		return true
	})
	return out
}

// optedOut reports whether a line of the call, or the comment block
// directly above it, carries "// lint:nowrap" with a reason.
func optedOut(lines []string, first, last int) bool {
	nowrap := func(l string) bool {
		i := strings.Index(l, nowrapMarker)
		return i >= 0 && strings.TrimSpace(l[i+len(nowrapMarker):]) != ""
	}
	for n := first; n <= last && n <= len(lines); n++ {
		if nowrap(lines[n-1]) {
			return true
		}
	}
	for i := first - 2; i >= 0 && strings.HasPrefix(strings.TrimSpace(lines[i]), "//"); i-- {
		if nowrap(lines[i]) {
			return true
		}
	}
	return false
}

// formatVerbs returns the verb letter of each argument a format string
// literal consumes, in order; ok is false for formats it does not model
// (explicit argument indexes).
func formatVerbs(quoted string) (verbs []rune, ok bool) {
	s := quoted
	if len(s) >= 2 {
		s = s[1 : len(s)-1] // the escapes do not matter: % is never escaped
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		i++
		for i < len(s) && strings.IndexByte("+-# 0123456789.*[]", s[i]) >= 0 {
			switch s[i] {
			case '[':
				return nil, false
			case '*':
				verbs = append(verbs, '*')
			}
			i++
		}
		if i < len(s) && s[i] != '%' {
			verbs = append(verbs, rune(s[i]))
		}
	}
	return verbs, true
}

// exprName is the last name of an identifier or selector (err, l.mu.err),
// else "".
func exprName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return e.Sel.Name
	}
	return ""
}

func isSelector(e ast.Expr, pkg, name string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg
}

const modelsMarker = "// models:"

func checkSleeps(rel string, fset *token.FileSet, f *ast.File, lines []string) []finding {
	var out []finding
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || !isSelector(call.Fun, "time", "Sleep") {
			return true
		}
		line := fset.Position(call.Pos()).Line
		switch {
		case strings.HasPrefix(rel, "internal/testutil/wait/"):
			// The polling helper: its pause is the poll interval.
		case !isTestFile(rel):
			out = append(out, finding{line, "time.Sleep in product code: wait on a timer in a select with the context or the shutdown channel, so that Close does not wait out the sleep"})
		case !hasMarker(lines, line, modelsMarker):
			out = append(out, finding{line, `time.Sleep in a test without a "// models: ..." comment (same line or directly above) naming the fault or pacing it models; to wait for a condition use wait.For or a channel`})
		}
		return true
	})
	return out
}
