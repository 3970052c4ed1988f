package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	var stderr strings.Builder
	cfg, err := parseFlags(args, &stderr)
	if err != nil && stderr.Len() == 0 {
		t.Errorf("error %v printed nothing", err)
	}
	return cfg, err
}

func TestFlagDefaults(t *testing.T) {
	cfg, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:1883" || cfg.MQTT != 5 || cfg.QoS != 1 || cfg.SubQoS != 1 || cfg.Duration != 10*time.Second ||
		cfg.Count != 0 || cfg.Devices != 1 || cfg.Filter != "sensors/+/temp" || cfg.PubClient != pubPaho || cfg.Inflight != 1 {
		t.Fatalf("defaults: %+v", cfg)
	}
	if !strings.HasPrefix(cfg.ClientPrefix, "mqttload-") || len(cfg.ClientPrefix) != len("mqttload-123456-") {
		t.Fatalf("client prefix %q", cfg.ClientPrefix)
	}
	other, _ := parse(t)
	if other.ClientPrefix == cfg.ClientPrefix {
		t.Fatal("two runs share a client prefix")
	}
}

func TestFlagDerivedValues(t *testing.T) {
	cfg, err := parse(t, "--count", "100", "--qos", "2", "--publishers", "3", "--topic", "a/{dev}/b/{dev}x", "--mqtt", "3")
	if err == nil {
		t.Fatal("{dev} twice accepted")
	}
	cfg, err = parse(t, "--count", "100", "--qos", "2", "--sub-qos", "1", "--publishers", "3", "--topic", "a/d{dev}", "--mqtt", "3")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Duration != 0 || cfg.Count != 100 || cfg.SubQoS != 1 || cfg.effectiveQoS() != 1 || cfg.Devices != 3 ||
		cfg.Filter != "a/d+" || cfg.PubClient != pubRec {
		t.Fatalf("derived: %+v", cfg)
	}
	cfg, err = parse(t, "--count", "100", "--duration", "5s")
	if err != nil || cfg.Duration != 5*time.Second {
		t.Fatalf("explicit duration with count: %v %v", cfg.Duration, err)
	}
	cfg, err = parse(t, "--queued", "1000", "--publishers", "3")
	if err != nil || !cfg.Durable || cfg.Count != 334 || cfg.Duration != 0 {
		t.Fatalf("queued: %+v, %v", cfg, err)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--mqtt", "4"},
		{"--qos", "3"},
		{"--sub-qos", "5"},
		{"--publishers", "0"},
		{"--duration", "0"},
		{"--sub-offline-at", "1s"},
		{"--queued", "10", "--qos", "0"},
		{"--queued", "10", "--subscribers", "0"},
		{"--topic", "a/+/b"},
		{"--pub-client", "mosquitto"},
		{"--sub-receive-max", "70000"},
		{"--inflight", "0"},
		{"--session-expiry", "-1"},
		{"extra"},
		{"--nonsense"},
	} {
		if _, err := parse(t, args...); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

func TestHelpNamesEveryFlag(t *testing.T) {
	var stderr strings.Builder
	if _, err := parseFlags([]string{"--help"}, &stderr); err == nil {
		t.Fatal("--help did not stop")
	}
	for _, f := range []string{"addr", "publishers", "subscribers", "qos", "sub-qos", "payload", "topic", "devices", "filter",
		"rate", "count", "duration", "durable", "mqtt", "sub-offline-at", "sub-offline-for", "sub-addr2", "history", "check",
		"json", "queued", "retain", "drain", "inflight"} {
		if !strings.Contains(stderr.String(), "-"+f+" ") && !strings.Contains(stderr.String(), "-"+f+"\n") {
			t.Errorf("--help does not mention --%s", f)
		}
	}
}

func TestTopicsOf(t *testing.T) {
	cfg := defaultConfig()
	cfg.Publishers, cfg.Devices = 3, 7
	got := [][]string{cfg.topicsOf(0), cfg.topicsOf(1), cfg.topicsOf(2)}
	want := [][]string{
		{"sensors/0/temp", "sensors/3/temp", "sensors/6/temp"},
		{"sensors/1/temp", "sensors/4/temp"},
		{"sensors/2/temp", "sensors/5/temp"},
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("publisher %d: %v, want %v", i, got[i], want[i])
		}
	}
	cfg.Devices = 2 // fewer devices than publishers: they share
	if got := cfg.topicsOf(2); !slices.Equal(got, []string{"sensors/0/temp"}) {
		t.Errorf("shared device: %v", got)
	}
	cfg.Topic = "fixed/topic"
	if got := cfg.topicsOf(1); !slices.Equal(got, []string{"fixed/topic"}) {
		t.Errorf("no {dev}: %v", got)
	}
	cfg.Filter = "fixed/#"
	if !cfg.filterCoversAll() {
		t.Error("fixed/# does not cover fixed/topic")
	}
	cfg.Filter = "other/#"
	if cfg.filterCoversAll() {
		t.Error("other/# covers fixed/topic")
	}
}

func TestMainBadFlagsExit2(t *testing.T) {
	if code := mainErr(t.Context(), []string{"--mqtt", "7"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
}
