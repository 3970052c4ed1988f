// Package failpoint kills the process at named points of its code, so crash
// tests can stop a real gateway exactly between two steps (say, after dsd
// committed a message and before the PUBACK was written).
//
// Points are armed by the environment variable STRATA_FAILPOINTS, read once
// at start-up: a comma-separated list of name or name=N, where N (default 1)
// is the hit that fires. A fired point sends SIGKILL to its own process: no
// deferred function, no flush, no goodbye, like a power cut of the process.
// Without the variable Hit costs one load of a bool.
package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// EnvVar names the environment variable that arms failpoints.
const EnvVar = "STRATA_FAILPOINTS"

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

// Parse reads a STRATA_FAILPOINTS value: name[=N],… with N ≥ 1.
func Parse(spec string) (map[string]*atomic.Int64, error) {
	p := map[string]*atomic.Int64{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, n := item, int64(1)
		if k, v, ok := strings.Cut(item, "="); ok {
			var err error
			if n, err = strconv.ParseInt(v, 10, 64); err != nil || n < 1 {
				return nil, fmt.Errorf("%s: %q: the hit must be a number ≥ 1", EnvVar, item)
			}
			name = k
		}
		c := &atomic.Int64{}
		c.Store(n)
		p[name] = c
	}
	return p, nil
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
