package dsdbackend

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// The option structs of this package share storage.Options' shape:
// EnsureDefaults fills every zero field with the default its comment
// documents, and Validate refuses what is left out of range, naming the
// field. The constructors (New, NewLease, NewIngest) call both; the
// gateway program calls Validate itself first, so that a bad setting is an
// error at start-up and never reaches a constructor.

// Defaults of the option structs.
const (
	// DefaultCallTimeout is Options.CallTimeout's default: two default
	// heartbeat intervals.
	DefaultCallTimeout = 4 * time.Second
	// DefaultIngestTimeout is IngestOptions.Timeout's default.
	DefaultIngestTimeout = 10 * time.Second
	// DefaultIngestMaxRequestBytes is IngestOptions.MaxRequestBytes' default.
	DefaultIngestMaxRequestBytes = 1 << 20
)

// EnsureDefaults fills every unset field with its default.
func (o *Options) EnsureDefaults() {
	if o.CallTimeout == 0 {
		o.CallTimeout = DefaultCallTimeout
	}
}

// Validate reports every invalid field, joined into one error. Call it
// after EnsureDefaults.
func (o Options) Validate() error {
	if o.CallTimeout <= 0 {
		return fmt.Errorf("dsdbackend: options: CallTimeout %v <= 0", o.CallTimeout)
	}
	return nil
}

// EnsureDefaults fills every unset field with its default.
func (o *LeaseOptions) EnsureDefaults() {
	if o.Interval == 0 {
		o.Interval = DefaultLeaseInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports every invalid field, joined into one error. Call it
// after EnsureDefaults.
func (o LeaseOptions) Validate() error {
	if o.Interval <= 0 {
		return fmt.Errorf("dsdbackend: lease options: Interval %v <= 0", o.Interval)
	}
	return nil
}

// EnsureDefaults fills every unset field with its default.
func (o *IngestOptions) EnsureDefaults() {
	if o.Timeout == 0 {
		o.Timeout = DefaultIngestTimeout
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = DefaultIngestMaxRequestBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports every invalid field, joined into one error. Call it
// after EnsureDefaults.
func (o IngestOptions) Validate() error {
	var errs []error
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("dsdbackend: ingest options: Timeout %v <= 0", o.Timeout))
	}
	if o.MaxRequestBytes <= 0 {
		errs = append(errs, fmt.Errorf("dsdbackend: ingest options: MaxRequestBytes %d <= 0", o.MaxRequestBytes))
	}
	return errors.Join(errs...)
}

// mustBeValid is the constructors' check of options that Validate
// refused.
func mustBeValid(err error) {
	if err != nil {
		// Invariant: the caller validated its options (the gateway program
		// does, before it builds anything); an invalid one here is a bug in
		// the caller, not input.
		panic(err)
	}
}
