package server

import (
	"testing"

	"github.com/stratamq/strata/config"
)

// TestZoneTopicAliasOutbound: mqtt.max_topic_alias_outbound is read
// globally and per zone, a zone's value replacing the global one.
func TestZoneTopicAliasOutbound(t *testing.T) {
	c := config.Default()
	if got := zoneConfig(c, "default", 0).MaxTopicAliasOutbound; got != 64 {
		t.Errorf("default: %d, want 64", got)
	}
	c.MQTT.MaxTopicAliasOutbound = 1024
	off := 0
	c.Zone["devices"] = config.Zone{MQTT: &config.ZoneMQTT{MaxTopicAliasOutbound: &off}}
	if got := zoneConfig(c, "default", 0).MaxTopicAliasOutbound; got != 1024 {
		t.Errorf("global 1024: %d", got)
	}
	if got := zoneConfig(c, "devices", 0).MaxTopicAliasOutbound; got != 0 {
		t.Errorf("zone devices 0: %d", got)
	}
}
