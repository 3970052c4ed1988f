package lint

import (
	"strings"
	"testing"
)

// TestSourceRulesCatch feeds each source rule a file that breaks it and one
// that keeps it, so that a rule that silently stops matching fails here.
func TestSourceRulesCatch(t *testing.T) {
	for _, tc := range []struct {
		name, rel, src string
		want           []string // substrings of the findings, in order; none for a clean file
	}{
		{"panic without invariant", "x/a.go", `package x
func f() {
	// A comment that says nothing.
	panic("x: boom")
}`, []string{"x/a.go:4: panicNeedsInvariant"}},
		{"panic with invariant above", "x/a.go", `package x
func f(err error) {
	// Invariant: marshalling a well-formed in-memory message cannot fail.
	// (more words)
	panic(err)
}`, nil},
		{"panic with invariant on the line", "x/a.go", `package x
func f(err error) {
	panic(err) // Invariant: the switch covers every command type.
}`, nil},
		{"panic in a test", "x/a_test.go", `package x
func f() { panic("boom") }`, nil},
		{"errorf %v err", "x/a.go", `package x
import "fmt"
func f(err error) error {
	return fmt.Errorf("x: %d: %v", 3, err)
}`, []string{"x/a.go:4: errorfWraps", "err with %v"}},
		{"errorf %s of a field ending in Err, over lines", "x/a.go", `package x
import "fmt"
type p struct{ exitErr error }
func f(q p) error {
	return fmt.Errorf("x: %s",
		q.exitErr)
}`, []string{"x/a.go:5: errorfWraps", "exitErr with %s"}},
		{"errorf %w and %v of a non-error", "x/a.go", `package x
import "fmt"
func f(err error, stderr string) error {
	return fmt.Errorf("x: %v %s: %w", 1, stderr, err)
}`, nil},
		{"errorf opted out", "x/a.go", `package x
import "fmt"
func f(err error) error {
	return fmt.Errorf("x: %v", err) // lint:nowrap the cause is detail
}`, nil},
		{"errorf opt-out without a reason", "x/a.go", `package x
import "fmt"
func f(err error) error {
	return fmt.Errorf("x: %v", err) // lint:nowrap 
}`, []string{"x/a.go:4: errorfWraps"}},
		{"sleep in product code", "x/a.go", `package x
import "time"
func f() {
	// models: nothing, product code may not sleep.
	time.Sleep(time.Second)
}`, []string{"x/a.go:5: sleepModels", "product code"}},
		{"sleep in a test without a comment", "x/a_test.go", `package x
import "time"
func f() {
	time.Sleep(time.Second) // wait for the server
}`, []string{"x/a_test.go:4: sleepModels", "models:"}},
		{"sleep in a test that models a fault", "x/a_test.go", `package x
import "time"
func f() {
	// models: a client silent past its keepalive.
	time.Sleep(time.Second)
	time.Sleep(time.Second) // models: a slow reader.
}`, nil},
		{"the polling helper", "internal/testutil/wait/wait.go", `package wait
import "time"
func f() { time.Sleep(time.Millisecond) }`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checkSource(t, tc.rel, []byte(tc.src))
			if len(tc.want) == 0 {
				if len(got) != 0 {
					t.Fatalf("want no findings, got %q", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("want one finding, got %q", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got[0], w) {
					t.Errorf("finding %q does not contain %q", got[0], w)
				}
			}
		})
	}
}
