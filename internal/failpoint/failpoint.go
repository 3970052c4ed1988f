// Package failpoint kills the process at named points of its code, so crash
// tests can stop a real gateway exactly between two steps (say, after dsd
// committed a message and before the PUBACK was written).
//
// Points are armed by the environment variable STRATA_FAILPOINTS, read once
// at start-up: a comma-separated list of name or name=N, where N (default 1)
// is the hit that fires. A fired point sends SIGKILL to its own process: no
// deferred function, no flush, no goodbye, like a power cut of the process.
// Without the variable Hit costs one load of a bool.
//
// Failpoints are compiled in only under the build tag failpoints (the
// integration harness builds its binaries with -tags failpoints). Without
// it, as in every release binary (make release, scripts/release.sh), Hit
// does nothing, Armed is false, and a STRATA_FAILPOINTS in the environment
// is ignored with a warning on stderr.
package failpoint

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// EnvVar names the environment variable that arms failpoints.
const EnvVar = "STRATA_FAILPOINTS"

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
