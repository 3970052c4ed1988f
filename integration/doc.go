// Package integration holds Strata's multi-process tests: they build the real
// dsd and gateway binaries, start them as child processes on 127.0.0.1 with
// free ports, drive them with real clients, kill them with SIGKILL (or stop
// them with SIGSTOP) under load, and judge the recorded history with package
// checker.
//
// The harness in this package (harness.go: Build, StartDSD, StartGateway) is
// shared by every such test.
// Long variants run under `make torture` (STRATA_TORTURE=1).
package integration
