package config

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// Validate reports every value out of range, joined into one error.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalid, key, fmt.Sprintf(format, args...)))
	}
	ds := c.DurableSessions
	if ds.BatchSize < 1 {
		bad("durable_sessions.batch_size", "must be at least 1, got %d", ds.BatchSize)
	}
	if ds.MaxBatchesPerStream < 1 || ds.MaxBatchesPerStream > 64 {
		bad("durable_sessions.max_batches_per_stream", "must be 1..64, got %d", ds.MaxBatchesPerStream)
	}
	if ds.MaxLinkEntries < 1 {
		bad("durable_sessions.max_link_entries", "must be at least 1, got %d", ds.MaxLinkEntries)
	}
	for key, d := range map[string]Duration{
		"durable_sessions.idle_poll_interval":         ds.IdlePollInterval,
		"durable_sessions.heartbeat_interval":         ds.HeartbeatInterval,
		"durable_sessions.gateway_heartbeat_interval": ds.GatewayHeartbeatInterval,
		"durable_sessions.renew_streams_interval":     ds.RenewStreamsInterval,
		"durable_sessions.session_gc_interval":        ds.SessionGCInterval,
	} {
		if d <= 0 {
			bad(key, "must be positive")
		}
	}
	if ds.MessageRetentionPeriod < 0 {
		bad("durable_sessions.message_retention_period", "must not be negative (0 turns retention off)")
	}
	m := c.DurableStorage.Messages
	if m.DataDir == "" {
		bad("durable_storage.messages.data_dir", "must not be empty")
	}
	if m.NShards < 1 || m.NShards > 1<<16 {
		bad("durable_storage.messages.n_shards", "must be 1..65536, got %d", m.NShards)
	}
	if m.NSites < 1 {
		bad("durable_storage.messages.n_sites", "must be at least 1, got %d", m.NSites)
	}
	if m.ReplicationFactor < 1 {
		bad("durable_storage.messages.replication_factor", "must be at least 1, got %d", m.ReplicationFactor)
	}
	if m.DiskCheckInterval <= 0 {
		bad("durable_storage.messages.disk_check_interval", "must be positive")
	}
	if m.LocalWriteBuffer.MaxItems < 1 {
		bad("durable_storage.messages.local_write_buffer.max_items", "must be at least 1, got %d", m.LocalWriteBuffer.MaxItems)
	}
	if m.LocalWriteBuffer.MaxBytes < 1024 {
		bad("durable_storage.messages.local_write_buffer.max_bytes", "must be at least 1KiB, got %s", m.LocalWriteBuffer.MaxBytes)
	}
	if m.LocalWriteBuffer.FlushInterval <= 0 {
		bad("durable_storage.messages.local_write_buffer.flush_interval", "must be positive")
	}
	l := m.Layout
	if l.Type != "wildcard_optimized" && l.Type != "wildcard_optimized_v2" {
		bad("durable_storage.messages.layout.type", "want \"wildcard_optimized_v2\" or \"wildcard_optimized\", got %q", l.Type)
	}
	if len(l.WildcardThresholds) != 2 || l.WildcardThresholds[0] < 0 || l.WildcardThresholds[1] < 0 {
		bad("durable_storage.messages.layout.wildcard_thresholds", "want [first_level, deeper_levels], non-negative, got %v", l.WildcardThresholds)
	}
	if l.MaxTrieStates < 1 {
		bad("durable_storage.messages.layout.max_trie_states", "must be at least 1, got %d", l.MaxTrieStates)
	}
	// bits_per_topic_level, epoch_bits and topic_index_bytes are checked by the
	// layout itself (lts), which knows the whole-byte rule.
	mq := c.MQTT
	if mq.MaxPacketSize < 64 || mq.MaxPacketSize > 268435455 {
		bad("mqtt.max_packet_size", "must be 64B..256MiB (the MQTT limit), got %s", mq.MaxPacketSize)
	}
	if mq.ReceiveMaximum < 1 || mq.ReceiveMaximum > 65535 {
		bad("mqtt.receive_maximum", "must be 1..65535, got %d", mq.ReceiveMaximum)
	}
	if mq.MaxInflight < 1 || mq.MaxInflight > 32766 {
		bad("mqtt.max_inflight", "must be 1..32766, got %d", mq.MaxInflight)
	}
	if !validSharedStrategy(mq.SharedSubscriptionStrategy) {
		bad("mqtt.shared_subscription_strategy", "must be round_robin, random, sticky, hash_clientid or hash_topic, got %q", mq.SharedSubscriptionStrategy)
	}
	if mq.MaxTopicAliasOutbound < 0 || mq.MaxTopicAliasOutbound > 65535 {
		bad("mqtt.max_topic_alias_outbound", "must be 0..65535, got %d", mq.MaxTopicAliasOutbound)
	}
	if mq.MaxConnRate < 1 {
		bad("mqtt.max_conn_rate", "must be at least 1/s, got %d", mq.MaxConnRate)
	}
	if mq.ConnectTimeout <= 0 {
		bad("mqtt.connect_timeout", "must be positive")
	}
	if mq.MaxConnectPacketSize < 64 || mq.MaxConnectPacketSize > 268435455 {
		bad("mqtt.max_connect_packet_size", "must be 64B..256MiB, got %s", mq.MaxConnectPacketSize)
	}
	if mq.MaxInboundBytes < 1024 {
		bad("mqtt.max_inbound_bytes", "must be at least 1KiB, got %s", mq.MaxInboundBytes)
	}
	if c.Gateway.SysInterval < 0 {
		bad("gateway.sys_interval", "must not be negative (0: off), got %s", c.Gateway.SysInterval)
	}
	if c.Gateway.MaxConnections < 0 {
		bad("gateway.max_connections", "must not be negative (0: no limit), got %d", c.Gateway.MaxConnections)
	}
	if c.Gateway.MaxConnectionsPerAddress < 0 {
		bad("gateway.max_connections_per_address", "must not be negative (0: no limit), got %d", c.Gateway.MaxConnectionsPerAddress)
	}
	for name, z := range c.Zone {
		if z.KeepaliveBackoff != nil && (*z.KeepaliveBackoff <= 0 || *z.KeepaliveBackoff > 10) {
			bad("zone."+name+".keepalive_backoff", "must be in (0, 10], got %v", *z.KeepaliveBackoff)
		}
		if z.ServerKeepalive != nil && *z.ServerKeepalive > Duration(65535e9) {
			bad("zone."+name+".server_keepalive", "must be at most 65535s, got %s", *z.ServerKeepalive)
		}
		if zm := z.MQTT; zm != nil && zm.MaxInflight != nil && (*zm.MaxInflight < 1 || *zm.MaxInflight > 32766) {
			bad("zone."+name+".mqtt.max_inflight", "must be 1..32766, got %d", *zm.MaxInflight)
		}
		if zm := z.MQTT; zm != nil && zm.SharedSubscriptionStrategy != nil && !validSharedStrategy(*zm.SharedSubscriptionStrategy) {
			bad("zone."+name+".mqtt.shared_subscription_strategy", "must be round_robin, random, sticky, hash_clientid or hash_topic, got %q", *zm.SharedSubscriptionStrategy)
		}
		if zm := z.MQTT; zm != nil && zm.MaxTopicAliasOutbound != nil && (*zm.MaxTopicAliasOutbound < 0 || *zm.MaxTopicAliasOutbound > 65535) {
			bad("zone."+name+".mqtt.max_topic_alias_outbound", "must be 0..65535, got %d", *zm.MaxTopicAliasOutbound)
		}
	}
	for typ, ls := range c.Listeners {
		switch typ {
		case "tcp", "ws", "tls", "wss":
		default:
			bad("listeners."+typ, "unknown listener type (want tcp, ws, tls or wss)")
		}
		for name, l := range ls {
			key := "listeners." + typ + "." + name
			if l.Bind == "" {
				bad(key+".bind", "must not be empty")
			}
			if l.Zone != "" {
				if _, ok := c.Zone[l.Zone]; !ok {
					bad(key+".zone", "zone %q is not configured", l.Zone)
				}
			}
			if (typ == "tls" || typ == "wss") && (l.CertFile == "" || l.KeyFile == "") {
				bad(key, "a %s listener needs certfile and keyfile", typ)
			}
			switch l.UseIdentityAsUsername {
			case "":
			case "cn", "san_dns", "san_email":
				if typ != "tls" && typ != "wss" || !l.VerifyPeer {
					bad(key+".use_identity_as_username", "needs a tls or wss listener with verify_peer = true")
				}
			default:
				bad(key+".use_identity_as_username", "want \"cn\", \"san_dns\", \"san_email\" or \"\", got %q", l.UseIdentityAsUsername)
			}
			if len(l.AllowedOrigins) > 0 && typ != "ws" && typ != "wss" {
				bad(key+".allowed_origins", "only ws and wss listeners check an Origin")
			}
			for _, o := range l.AllowedOrigins {
				if _, err := path.Match(o, ""); err != nil || o == "" {
					bad(key+".allowed_origins", "bad pattern %q", o)
				}
			}
			if m := l.AllowAnonymous; m != nil && *m != AnonymousLoopback && *m != AnonymousAllow && *m != AnonymousDeny {
				bad(key+".allow_anonymous", "want \"loopback\", true or false, got %q", string(*m))
			}
		}
	}
	if c.DSD.GRPCListen == "" {
		bad("dsd.grpc_listen", "must not be empty")
	}
	t := c.DSD.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("dsd.tls", "certfile and keyfile go together")
	}
	if t.CACertFile != "" && t.CertFile == "" {
		bad("dsd.tls.cacertfile", "client verification needs certfile and keyfile too")
	}
	for name, role := range t.Roles {
		if !validRole(role) {
			bad("dsd.tls.roles."+name, "role must be gateway, service, admin or site, got %q", role)
		}
	}
	if !validRole(t.DefaultRole) {
		bad("dsd.tls.default_role", "role must be gateway, service, admin or site, got %q", t.DefaultRole)
	}
	if n := c.DSD.MaxConcurrentStreams; n < 1 || n > 1<<20 {
		bad("dsd.max_concurrent_streams", "must be 1..1048576, got %d", n)
	}
	g := c.Gateway.DSDTLS
	if (g.CertFile == "") != (g.KeyFile == "") {
		bad("gateway.dsd_tls", "certfile and keyfile go together")
	}
	if !g.Enable && (g.CertFile != "" || g.CACertFile != "" || g.ServerName != "") {
		bad("gateway.dsd_tls.enable", "certfile, cacertfile or server_name is set but enable is false (the gateway would dial dsd in plaintext)")
	}
	if c.MaxClockSkew <= 0 {
		bad("max_clock_skew", "must be positive")
	}
	c.validateAuth(bad)
	return errors.Join(errs...)
}

func validRole(r string) bool {
	return r == "gateway" || r == "service" || r == "admin" || r == "site"
}

// Rate is a count per second; it reads "1000/s" or an integer.
type Rate int64

// UnmarshalTOML implements toml.Unmarshaler.
func (r *Rate) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		*r = Rate(v)
		return nil
	case string:
		n, ok := strings.CutSuffix(strings.TrimSpace(v), "/s")
		x, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
		if !ok || err != nil || x < 0 {
			return fmt.Errorf("%w: rate %q: want a count per second such as \"1000/s\"", ErrInvalid, v)
		}
		*r = Rate(x)
		return nil
	default:
		return fmt.Errorf("%w: rate must be a string such as \"1000/s\" or an integer, got %T", ErrInvalid, v)
	}
}

// MarshalText implements encoding.TextMarshaler.
func (r Rate) MarshalText() ([]byte, error) {
	return []byte(strconv.FormatInt(int64(r), 10) + "/s"), nil
}

// validSharedStrategy: the strategies of dsd's shared group readers.
func validSharedStrategy(s string) bool {
	switch s {
	case "round_robin", "random", "sticky", "hash_clientid", "hash_topic":
		return true
	}
	return false
}
