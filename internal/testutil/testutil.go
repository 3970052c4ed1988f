// Package testutil holds what only tests use; its sub-packages are test
// helpers (testpki: a throwaway CA; topicalias: a test client's inbound
// Topic Alias table; wait: deadline-bounded waits instead of sleeps;
// tcpproxy: a userspace TCP proxy that partitions processes). Product packages never import them (tools/lint
// TestTestHelpersStayInTests).
package testutil

import "os"

// Torture reports whether the long variants of the crash and durability
// suites were asked for: `make torture` sets STRATA_TORTURE=1. Any value
// but "" and "0" counts.
func Torture() bool {
	v := os.Getenv("STRATA_TORTURE")
	return v != "" && v != "0"
}
