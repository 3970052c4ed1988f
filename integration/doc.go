// Package integration holds Strata's multi-process tests: they build the real
// dsd (and, later, gateway) binaries, start them as child processes on
// 127.0.0.1 with free ports, drive them with real clients, kill them with
// SIGKILL under load, and judge the recorded history with package checker.
//
// The harness in this package (Build, StartDSD) is shared by every such test.
// Long variants run under `make torture` (STRATA_TORTURE=1).
package integration
