package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/packet"
)

func TestAdmission(t *testing.T) {
	c := config.Default()
	c.MQTT.MaxConnRate = 5
	slow := config.Rate(2)
	c.Zone["external"] = config.Zone{MQTT: &config.ZoneMQTT{MaxConnRate: &slow}}
	c.Zone["internal"] = config.Zone{}
	a := NewAdmission(c)
	now := time.Now()
	admitted := func(zone string, at time.Time, n int) int {
		ok := 0
		for range n {
			err := a.admitAt(zone, at)
			if err == nil {
				ok++
			} else if !errors.Is(err, ErrConnectionRateExceeded) {
				t.Fatalf("Admit: %v", err)
			}
		}
		return ok
	}
	if got := admitted("default", now, 10); got != 5 {
		t.Errorf("default zone: %d of 10 admitted at once, want 5 (burst = one second's rate)", got)
	}
	if got := admitted("external", now, 10); got != 2 {
		t.Errorf("external zone: %d admitted, want 2 (its own rate)", got)
	}
	if got := admitted("internal", now, 10); got != 5 {
		t.Errorf("internal zone: %d admitted, want 5 (global rate, its own bucket)", got)
	}
	if got := admitted("nonexistent", now, 1); got != 0 {
		t.Errorf("unknown zone shares the default zone's (empty) bucket, admitted %d", got)
	}
	if got := admitted("default", now.Add(200*time.Millisecond), 10); got != 1 {
		t.Errorf("after 200ms at 5/s: %d admitted, want 1", got)
	}
	if got := admitted("external", now.Add(time.Second), 10); got != 2 {
		t.Errorf("external after 1s: %d admitted, want 2", got)
	}
	err := a.admitAt("external", now.Add(time.Second))
	if code, send := ConnackCode(err, packet.V5); code != 0x9F || !send {
		t.Errorf("MQTT 5 over the rate: %#x %v, want CONNACK 0x9F", code, send)
	}
	if _, send := ConnackCode(err, packet.V311); send {
		t.Errorf("MQTT 3.1.1 over the rate: want a close without CONNACK")
	}
	if err := NewAdmission(c).Admit("internal"); err != nil {
		t.Errorf("Admit with the real clock: %v", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for bind, want := range map[string]bool{
		"127.0.0.1:1883": true,
		"127.0.0.2:1883": true,
		"[::1]:1883":     true,
		"localhost:1883": true,
		"LOCALHOST:1883": true,
		"127.0.0.1":      true,
		"::1":            true,
		":1883":          false,
		"0.0.0.0:1883":   false,
		"[::]:1883":      false,
		"10.0.0.1:1883":  false,
		"example.com:1":  false,
		"":               false,
	} {
		if got := IsLoopback(bind); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", bind, got, want)
		}
	}
}
