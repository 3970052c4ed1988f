//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"sync/atomic"
)

// Enabled says whether failpoints are compiled in (the failpoints build tag).
const Enabled = true

var (
	armed  bool
	points map[string]*atomic.Int64
)

func init() {
	spec := os.Getenv(EnvVar)
	if spec == "" {
		return
	}
	p, err := Parse(spec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "failpoint: %v\n", err)
		os.Exit(2)
	}
	points, armed = p, len(p) > 0
}

// Hit counts a pass through point name and kills the process when it is
// the armed hit.
func Hit(name string) {
	if !armed {
		return
	}
	if c, ok := points[name]; ok && c.Add(-1) == 0 {
		fmt.Fprintf(os.Stderr, "failpoint %s: killing the process\n", name)
		self, err := os.FindProcess(os.Getpid())
		if err == nil {
			_ = self.Kill()
		}
		select {} // SIGKILL is on its way; nothing after the point runs
	}
}

// Armed reports whether any failpoint is armed, for callers that must
// prepare a point (flush what was written) before hitting it.
func Armed() bool { return armed }
