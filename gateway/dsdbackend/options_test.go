package dsdbackend

import (
	"strings"
	"testing"
	"time"
)

func TestOptionsDefaultsAndValidate(t *testing.T) {
	var o Options
	o.EnsureDefaults()
	if o.CallTimeout != DefaultCallTimeout {
		t.Errorf("CallTimeout %v, want %v", o.CallTimeout, DefaultCallTimeout)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
	o = Options{CallTimeout: -time.Second}
	o.EnsureDefaults()
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "CallTimeout") {
		t.Errorf("negative CallTimeout: %v, want an error naming CallTimeout", err)
	}
}

func TestLeaseOptionsDefaultsAndValidate(t *testing.T) {
	var o LeaseOptions
	o.EnsureDefaults()
	if o.Interval != DefaultLeaseInterval || o.Logger == nil {
		t.Errorf("defaults: Interval %v (want %v), Logger %v", o.Interval, DefaultLeaseInterval, o.Logger)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
	o = LeaseOptions{Interval: -time.Second}
	o.EnsureDefaults()
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "Interval") {
		t.Errorf("negative Interval: %v, want an error naming Interval", err)
	}
}

func TestIngestOptionsDefaultsAndValidate(t *testing.T) {
	var o IngestOptions
	o.EnsureDefaults()
	if o.Timeout != DefaultIngestTimeout || o.MaxRequestBytes != DefaultIngestMaxRequestBytes || o.Logger == nil {
		t.Errorf("defaults: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
	o = IngestOptions{Timeout: -time.Second, MaxRequestBytes: -1}
	o.EnsureDefaults()
	err := o.Validate()
	if err == nil || !strings.Contains(err.Error(), "Timeout") || !strings.Contains(err.Error(), "MaxRequestBytes") {
		t.Errorf("negative Timeout and MaxRequestBytes: %v, want an error naming both", err)
	}
}

func TestConstructorsRefuseInvalidOptions(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(error).Error(), "CallTimeout") {
			t.Errorf("New with a negative CallTimeout: recovered %v, want a panic naming CallTimeout", r)
		}
	}()
	New(nil, nil, Options{CallTimeout: -1})
}
