package config

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The example config documents every key with its default; it must say exactly
// what Default says, so the docs cannot drift from the code.
func TestExampleConfigIsTheDefault(t *testing.T) {
	data, err := os.ReadFile("../strata.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	got := Default()
	if err := Parse(data, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Default(), got); diff != "" {
		t.Errorf("strata.example.toml differs from Default() (-default +example):\n%s", diff)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("default config is invalid: %v", err)
	}
}

func TestStringRoundTrips(t *testing.T) {
	c := Default()
	c.DurableSessions.MessageRetentionPeriod = Duration(90 * time.Minute)
	c.DurableStorage.Messages.LocalWriteBuffer.MaxBytes = 3 << 10
	ka := Duration(60 * time.Second)
	c.Zone["external"] = Zone{ServerKeepalive: &ka}
	var back Config
	if err := Parse([]byte(c.String()), &back); err != nil {
		t.Fatalf("printed config does not parse: %v\n%s", err, c.String())
	}
	if diff := cmp.Diff(c, back); diff != "" {
		t.Errorf("round trip changed the config:\n%s", diff)
	}
}

func TestUnknownKeysAreErrors(t *testing.T) {
	c := Default()
	err := Parse([]byte("durable_sessions.batch_sise = 10\nmqtt.nope = 1\n"), &c)
	if err == nil || !strings.Contains(err.Error(), "durable_sessions.batch_sise") || !strings.Contains(err.Error(), "mqtt.nope") {
		t.Fatalf("want an error naming both unknown keys, got %v", err)
	}
}

func TestSeedSpellings(t *testing.T) {
	c := Default()
	src := `
durable_sessions.message_retention_period = "1d"
durable_storage.messages.n_shards = 16
durable_storage.messages.layout.epoch_bits = 20
zone.external.server_keepalive = 60
zone.external.keepalive_backoff = 0.75
zone.external.durable_sessions.enable = false
`
	if err := Parse([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	z := c.Zone["external"]
	if z.ServerKeepalive == nil || z.ServerKeepalive.Std() != time.Minute {
		t.Errorf("server_keepalive = %v, want 60s", z.ServerKeepalive)
	}
	if z.DurableSessions == nil || z.DurableSessions.Enable == nil || *z.DurableSessions.Enable {
		t.Errorf("zone durable_sessions.enable not read as false")
	}
	if _, ok := c.Zone["default"]; !ok {
		t.Errorf("default zone missing")
	}
}

func TestUnits(t *testing.T) {
	durations := map[string]time.Duration{"1d": 24 * time.Hour, "10s": 10 * time.Second, "500ms": 500 * time.Millisecond, "2h": 2 * time.Hour, "1h30m": 90 * time.Minute}
	for in, want := range durations {
		got, err := ParseDuration(in)
		if err != nil || got.Std() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1w", "-1s", "d", "1.5d"} {
		if _, err := ParseDuration(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseDuration(%q) = %v, want ErrInvalid", in, err)
		}
	}
	sizes := map[string]int64{"4MiB": 4 << 20, "1MB": 1e6, "10KiB": 10 << 10, "7": 7, "3 GiB": 3 << 30, "12B": 12}
	for in, want := range sizes {
		got, err := ParseSize(in)
		if err != nil || int64(got) != want {
			t.Errorf("ParseSize(%q) = %v, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1TB", "-1KiB", "1.5MiB", "MiB"} {
		if _, err := ParseSize(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSize(%q) = %v, want ErrInvalid", in, err)
		}
	}
}

func TestValidateNamesTheKey(t *testing.T) {
	cases := map[string]func(*Config){
		"durable_storage.messages.n_shards":                     func(c *Config) { c.DurableStorage.Messages.NShards = 0 },
		"durable_storage.messages.layout.type":                  func(c *Config) { c.DurableStorage.Messages.Layout.Type = "skipstream" },
		"mqtt.max_packet_size":                                  func(c *Config) { c.MQTT.MaxPacketSize = 1 << 30 },
		"listeners.tls.x":                                       func(c *Config) { c.Listeners["tls"] = map[string]Listener{"x": {Bind: ":8883"}} },
		"durable_storage.messages.layout.wildcard_thresholds":   func(c *Config) { c.DurableStorage.Messages.Layout.WildcardThresholds = []int{1} },
		"durable_storage.messages.local_write_buffer.max_items": func(c *Config) { c.DurableStorage.Messages.LocalWriteBuffer.MaxItems = 0 },
		"durable_sessions.max_link_entries":                     func(c *Config) { c.DurableSessions.MaxLinkEntries = 0 },
		"dsd.max_concurrent_streams":                            func(c *Config) { c.DSD.MaxConcurrentStreams = 0 },
		"gateway.dsd_tls.enable":                                func(c *Config) { c.Gateway.DSDTLS.CertFile, c.Gateway.DSDTLS.KeyFile = "gw.pem", "gw-key.pem" },
		"gateway.dsd_tls":                                       func(c *Config) { c.Gateway.DSDTLS = GatewayDSDTLS{Enable: true, CertFile: "gw.pem"} },
		"gateway.sys_interval":                                  func(c *Config) { c.Gateway.SysInterval = -1 },
		"mqtt.max_topic_alias_outbound":                         func(c *Config) { c.MQTT.MaxTopicAliasOutbound = 65536 },
		"zone.z.mqtt.max_topic_alias_outbound": func(c *Config) {
			n := -1
			c.Zone["z"] = Zone{MQTT: &ZoneMQTT{MaxTopicAliasOutbound: &n}}
		},
	}
	for key, mutate := range cases {
		c := Default()
		mutate(&c)
		err := c.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: Validate() = %v, want an ErrInvalid naming the key", key, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile("../strata.example.toml")
	f.Add(data)
	f.Add([]byte("mqtt.max_packet_size = \"1MiB\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		if err := Parse(data, &c); err != nil {
			return
		}
		_ = c.Validate()
		_ = c.String()
	})
}

func TestNegativeRetentionIsInvalid(t *testing.T) {
	c := Default()
	c.DurableSessions.MessageRetentionPeriod = Duration(-time.Hour)
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "durable_sessions.message_retention_period") {
		t.Fatalf("want an error naming durable_sessions.message_retention_period, got %v", err)
	}
	c.DurableSessions.MessageRetentionPeriod = 0
	if err := c.Validate(); err != nil {
		t.Fatalf("0 (retention off) is valid, got %v", err)
	}
}

// TestLayoutTypes: both layout types validate, and v2 is the default.
func TestLayoutTypes(t *testing.T) {
	if got := Default().DurableStorage.Messages.Layout.Type; got != "wildcard_optimized_v2" {
		t.Errorf("default layout type %q, want wildcard_optimized_v2", got)
	}
	for _, typ := range []string{"wildcard_optimized", "wildcard_optimized_v2"} {
		c := Default()
		c.DurableStorage.Messages.Layout.Type = typ
		if err := c.Validate(); err != nil {
			t.Errorf("layout type %q: %v", typ, err)
		}
	}
}
