//go:build !failpoints

package failpoint

import (
	"fmt"
	"os"
)

// Enabled says whether failpoints are compiled in (the failpoints build tag).
const Enabled = false

func init() {
	if os.Getenv(EnvVar) != "" {
		fmt.Fprintf(os.Stderr, "failpoint: %s is set, but this binary was built without -tags failpoints: ignored\n", EnvVar)
	}
}

// Hit does nothing: failpoints are not compiled in.
func Hit(string) {}

// Armed is false: failpoints are not compiled in.
func Armed() bool { return false }
