package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/dsd/server"
	"github.com/stratamq/strata/gateway/dsdbackend"
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

// TestHeartbeatDefaultsAgree: dsd's and the gateway's defaults of the
// lease interval are the config's default, so a library user and a config
// user get the same lease.
func TestHeartbeatDefaultsAgree(t *testing.T) {
	want := config.Default().DurableSessions.GatewayHeartbeatInterval.Std()
	if server.DefaultHeartbeatInterval != want || dsdbackend.DefaultLeaseInterval != want {
		t.Errorf("heartbeat defaults: dsd/server %v, gateway/dsdbackend %v, config %v", server.DefaultHeartbeatInterval, dsdbackend.DefaultLeaseInterval, want)
	}
}
