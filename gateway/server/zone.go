package server

import (
	"crypto/rand"
	"encoding/hex"
	"math"
	"time"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/session"
)

// What the gateway supports, announced to MQTT 5 clients in CONNACK.
const (
	// retainAvailable: PUBLISH with RETAIN is stored in dsd, which
	// applies the retained update.
	retainAvailable = true
	// Wildcard filters are accepted (dsd's streams match them),
	// Subscription Identifiers travel with deliveries, and shared
	// subscriptions are groups in dsd (durable sessions only).
	wildcardAvailable       = true
	sharedAvailable         = true
	subscriptionIDAvailable = true
	// topicAliasMaximum is the highest inbound Topic Alias; each alias holds
	// at most one topic name per connection.
	topicAliasMaximum = 64
)

// zoneConfig resolves what a connection of zone enforces: the built-in
// defaults, then mqtt.*, then zone "default", then the zone itself (a key a
// zone leaves unset inherits the one before).
func zoneConfig(c config.Config, zone string, connectTimeout time.Duration) session.Config {
	cfg := session.DefaultConfig()
	cfg.ConnectTimeout = connectTimeout
	cfg.TopicAliasMaximum = topicAliasMaximum
	cfg.RetainAvailable = retainAvailable
	cfg.WildcardAvailable = wildcardAvailable
	cfg.SharedAvailable = sharedAvailable
	cfg.SubscriptionIDAvailable = subscriptionIDAvailable
	cfg.DisconnectOnDeny = c.ACL.DenyAction == config.DenyDisconnect
	cfg.NewClientID = newClientID

	mq := c.MQTT
	ds := c.DurableSessions
	cfg.CheckpointInterval = ds.HeartbeatInterval.Std()
	cfg.BatchesPerStream = ds.MaxBatchesPerStream
	apply := func(z config.Zone) {
		if zd := z.DurableSessions; zd != nil {
			if zd.Enable != nil {
				ds.Enable = *zd.Enable
			}
			if zd.BatchSize != nil {
				ds.BatchSize = *zd.BatchSize
			}
		}
		if z.ServerKeepalive != nil {
			cfg.ServerKeepAlive, cfg.HasServerKeepAlive = seconds16(*z.ServerKeepalive), true
		}
		if z.KeepaliveBackoff != nil {
			cfg.KeepAliveBackoff = *z.KeepaliveBackoff
		}
		if z.MaxKeepalive != nil {
			cfg.MaxKeepAlive = seconds16(*z.MaxKeepalive)
		}
		if zm := z.MQTT; zm != nil {
			if zm.SessionExpiryInterval != nil {
				mq.SessionExpiryInterval = *zm.SessionExpiryInterval
			}
			if zm.MaxSessionExpiry != nil {
				mq.MaxSessionExpiry = *zm.MaxSessionExpiry
			}
			if zm.MaxPacketSize != nil {
				mq.MaxPacketSize = *zm.MaxPacketSize
			}
			if zm.ReceiveMaximum != nil {
				mq.ReceiveMaximum = *zm.ReceiveMaximum
			}
			if zm.MaxInflight != nil {
				mq.MaxInflight = *zm.MaxInflight
			}
			if zm.SharedSubscriptionStrategy != nil {
				mq.SharedSubscriptionStrategy = *zm.SharedSubscriptionStrategy
			}
			if zm.MaxTopicAliasOutbound != nil {
				mq.MaxTopicAliasOutbound = *zm.MaxTopicAliasOutbound
			}
		}
	}
	apply(c.Zone["default"])
	if zone != "default" {
		apply(c.Zone[zone])
	}
	cfg.Durable = ds.Enable
	cfg.BatchSize = max(ds.BatchSize, 1)
	cfg.MaxPacketSize = uint32(min(int64(mq.MaxPacketSize), math.MaxUint32))
	cfg.MaxConnectPacketSize = uint32(min(int64(c.MQTT.MaxConnectPacketSize), math.MaxUint32))
	cfg.ReceiveMaximum = uint16(min(max(mq.ReceiveMaximum, 1), math.MaxUint16))
	cfg.InflightLimit = max(mq.MaxInflight, 1)
	cfg.SharedStrategy = mq.SharedSubscriptionStrategy
	cfg.MaxTopicAliasOutbound = uint16(min(max(mq.MaxTopicAliasOutbound, 0), math.MaxUint16))
	cfg.SessionExpiry = seconds32(mq.SessionExpiryInterval)
	cfg.MaxSessionExpiry = seconds32(mq.MaxSessionExpiry)
	return cfg
}

func seconds16(d config.Duration) uint16 {
	return uint16(min(int64(d.Std()/time.Second), math.MaxUint16))
}

func seconds32(d config.Duration) uint32 {
	return uint32(min(int64(d.Std()/time.Second), math.MaxUint32))
}

// newClientID returns an assigned client identifier: 128 random bits, so
// unique across gateways without coordination.
func newClientID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "strata-" + hex.EncodeToString(b[:])
}
