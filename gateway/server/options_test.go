package server

import (
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/config"
)

func TestOptionsDefaultsAndValidate(t *testing.T) {
	var o Options
	o.EnsureDefaults()
	want := Options{Logger: o.Logger, ConnectTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, BackendTimeout: DefaultBackendTimeout,
		OutboundQueue: 1024, HTTP: HTTPTimeouts{ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second}}
	if o.Logger == nil || o.ConnectTimeout != want.ConnectTimeout || o.WriteTimeout != want.WriteTimeout || o.BackendTimeout != want.BackendTimeout ||
		o.OutboundQueue != want.OutboundQueue || o.HTTP != want.HTTP {
		t.Errorf("defaults:\n got %+v\nwant %+v", o, want)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}

	// ConnectTimeout's default is mqtt.connect_timeout when set.
	o = Options{Config: config.Config{MQTT: config.MQTT{ConnectTimeout: config.Duration(3 * time.Second)}}}
	o.EnsureDefaults()
	if o.ConnectTimeout != 3*time.Second {
		t.Errorf("ConnectTimeout %v, want mqtt.connect_timeout's 3s", o.ConnectTimeout)
	}

	o = Options{WriteTimeout: -time.Second, OutboundQueue: -1, HTTP: HTTPTimeouts{IdleTimeout: -time.Second}}
	o.EnsureDefaults()
	err := o.Validate()
	for _, field := range []string{"WriteTimeout", "OutboundQueue", "HTTP.IdleTimeout"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Validate: %v, want an error naming %s", err, field)
		}
	}
	if _, err := Listen(Options{BackendTimeout: -time.Second}); err == nil || !strings.Contains(err.Error(), "BackendTimeout") {
		t.Errorf("Listen with a negative BackendTimeout: %v, want an error naming it", err)
	}
}
