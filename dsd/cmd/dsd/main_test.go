package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stratamq/strata/config"
)

// TestDefaultConfigRetainsADay: a user who sets nothing gets generations
// rotated and dropped after 24h (the config default), not the storage
// library's zero value, which keeps every message.
func TestDefaultConfigRetainsADay(t *testing.T) {
	o := storageOptions(config.Default(), slog.New(slog.DiscardHandler))
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		t.Fatalf("the default config gives invalid storage options: %v", err)
	}
	if o.RetentionPeriod != 24*time.Hour {
		t.Errorf("RetentionPeriod = %v with the default config, want 24h", o.RetentionPeriod)
	}
}
