// Package lint holds Strata's lint-as-a-test: gofmt, go vet, staticcheck and
// the repository's own rules (which packages may depend on what, file sizes,
// one gRPC status translation point, typed atomics) and the source rules of
// source_rules_test.go: product panics name their invariant, fmt.Errorf wraps
// errors with %w, and time.Sleep lives only in tests that say what it
// models (docs/testing.md lists them). It has no non-test code;
// `go test ./tools/lint` (and so `make test`) runs it, so developers and CI
// check the same things.
package lint
