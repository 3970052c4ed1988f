package session

import (
	"math"
	"time"
)

// Config is what one connection's machine enforces: the settings of the zone
// of the listener it came in on. DefaultConfig gives the built-in values; the
// zero value is not meant to be used (it allows only QoS 0).
type Config struct {
	// ConnectTimeout closes a connection that has not sent a CONNECT this long
	// after it was accepted. Default 10s.
	ConnectTimeout time.Duration

	// ServerKeepAlive, when HasServerKeepAlive is set, replaces the Keep
	// Alive of MQTT 5 clients and is sent to them in CONNACK
	// (zone.<z>.server_keepalive, in seconds; 0 disables keep-alive).
	ServerKeepAlive    uint16
	HasServerKeepAlive bool
	// KeepAliveBackoff: a connection is closed after keepalive × backoff × 2
	// without a packet (zone.<z>.keepalive_backoff). Default 0.75.
	KeepAliveBackoff float64
	// MaxKeepAlive, when above zero, is the largest Keep Alive allowed
	// (zone.<z>.max_keepalive, seconds): MQTT 3.1/3.1.1 clients asking for
	// more are refused with CONNACK 0x02, MQTT 5 clients get it as Server
	// Keep Alive. Default 0 (none).
	MaxKeepAlive uint16

	// ReceiveMaximum is the number of QoS 1 and 2 PUBLISH packets the
	// gateway accepts unacknowledged (mqtt.receive_maximum). Default 32.
	ReceiveMaximum uint16
	// StoresInFlight is how many Stores of a connection may be on their
	// way to dsd at once; PUBLISHes that arrive while that many are in
	// flight join the next Store. 0: ReceiveMaximum, so that a publisher
	// with a full window has every message on its way at once.
	StoresInFlight int
	// MaxPacketSize is the largest packet accepted, in bytes
	// (mqtt.max_packet_size). Default 1 MiB.
	MaxPacketSize uint32
	// MaxConnectPacketSize is the largest first packet (the CONNECT)
	// accepted, in bytes (mqtt.max_connect_packet_size); a larger one closes
	// the connection. Until CONNECT, nothing larger is read. Default 64 KiB.
	MaxConnectPacketSize uint32
	// MaxInflightReleases is how many PUBREL releases (a Release action
	// each, a call to dsd) one connection has in flight; later PUBRELs
	// wait for one to finish. Default 8.
	MaxInflightReleases int
	// TopicAliasMaximum is the highest inbound Topic Alias accepted; 0
	// accepts none. Default 64.
	TopicAliasMaximum uint16
	// MaxTopicAliasOutbound is the most Topic Aliases the gateway gives the
	// topics it sends to one MQTT 5 client, below the client's Topic Alias
	// Maximum (mqtt.max_topic_alias_outbound); 0 sends none. Default 64.
	MaxTopicAliasOutbound uint16
	// MaxQoS is the highest QoS the gateway accepts and grants. Default 2.
	MaxQoS byte
	// RetainAvailable, WildcardAvailable, SharedAvailable and
	// SubscriptionIDAvailable say whether retained messages, wildcard
	// filters, shared subscriptions and Subscription Identifiers are
	// supported; they are announced to MQTT 5 clients in CONNACK.
	RetainAvailable   bool
	WildcardAvailable bool
	SharedAvailable   bool
	// SharedStrategy is how a shared group picks the member of each
	// batch (mqtt.shared_subscription_strategy; "" is round_robin).
	SharedStrategy          string
	SubscriptionIDAvailable bool

	// SessionExpiry is the expiry, in seconds, of MQTT 3.1/3.1.1 sessions
	// with Clean Session 0 (mqtt.session_expiry_interval). Default 7200.
	SessionExpiry uint32
	// MaxSessionExpiry, when above zero, caps the Session Expiry Interval of
	// MQTT 5 clients, in seconds (mqtt.max_session_expiry). Default 0 (none).
	MaxSessionExpiry uint32
	// MaxClientIDLength, when above zero, refuses longer client identifiers.
	// Default 0 (only the protocol's 65,535-byte limit).
	MaxClientIDLength int

	// DisconnectOnDeny closes the connection (DISCONNECT 0x87 first for
	// MQTT 5) when the ACL refuses a PUBLISH or a SUBSCRIBE filter
	// (acl.deny_action = "disconnect"). Otherwise a denied PUBLISH is
	// answered PUBACK/PUBREC 0x87 (MQTT 5) or acknowledged normally (3.1.1)
	// and dropped, and a denied filter gets its SUBACK failure code.
	// Default false.
	DisconnectOnDeny bool

	// Durable says whether sessions of this zone outlive their connection
	// (durable_sessions.enable): their subscriptions and delivery state are
	// committed to dsd. Without it a session ends with its connection.
	// Default true.
	Durable bool
	// CheckpointInterval is how often acknowledgement progress is committed
	// (durable_sessions.heartbeat_interval). Default 5s.
	CheckpointInterval time.Duration
	// BatchSize is the most messages one batch of a stream holds
	// (durable_sessions.batch_size). Default 100.
	BatchSize int
	// BatchesPerStream is how many batch records of one stream may be
	// unfinished (durable_sessions.max_batches_per_stream), at most 64. A
	// record holds what dsd pushed during one commit round, up to
	// BatchSize messages. Default 16.
	BatchesPerStream int
	// InflightLimit caps the QoS 1/2 PUBLISHes sent to a client and not yet
	// acknowledged, below the client's Receive Maximum (mqtt.max_inflight).
	// Default 256.
	InflightLimit int
	// OutboundWindow is the most PUBLISH packets handed to the connection's
	// writer and not yet written. Default 256.
	OutboundWindow int
	// RecordCommitDelay is how long a batch record whose messages may be
	// sent before it is durable (QoS 1, mayPrecedeRecord) waits for its
	// commit after the previous commit started: a busy subscriber then
	// commits about this often, not once per fsync. 0 commits at once.
	// A longer delay costs nothing in what a crash repeats (the
	// acknowledgements wait for CheckpointInterval anyway), and each
	// commit rewrites the rings of the streams it touches: at 50ms, commits
	// were a seventh of both processes' CPU in fan-out to 32 subscribers
	// (docs/benchmarks.md). Default 200ms.
	RecordCommitDelay time.Duration

	// LocalRetained returns the latest message of each local topic (the
	// gateway's $SYS topics, LocalMessage) that filter matches; a new
	// subscription to a $SYS filter gets them as retained messages. It
	// must not block. Nil: none.
	LocalRetained func(filter string) []LocalMessage

	// NewClientID returns a fresh, unique client identifier for a client
	// that connects with an empty one [MQTT-3.1.3-6]. The driver supplies
	// random ones; tests supply a counter. Required.
	NewClientID func() string
}

// DefaultConfig returns the built-in settings. NewClientID is left for the
// caller.
func DefaultConfig() Config {
	return Config{
		ConnectTimeout:        10 * time.Second,
		KeepAliveBackoff:      0.75,
		ReceiveMaximum:        32,
		MaxPacketSize:         1 << 20,
		MaxConnectPacketSize:  64 << 10,
		MaxInflightReleases:   8,
		TopicAliasMaximum:     64,
		MaxTopicAliasOutbound: 64,
		MaxQoS:                2,
		WildcardAvailable:     true,
		SessionExpiry:         7200,
		Durable:               true,
		CheckpointInterval:    5 * time.Second,
		BatchSize:             100,
		BatchesPerStream:      16,
		InflightLimit:         256,
		OutboundWindow:        256,
		RecordCommitDelay:     200 * time.Millisecond,
	}
}

// KeepAliveTimeout is how long a connection with keep-alive keepAlive (in
// seconds) may stay silent: keepAlive × backoff × 2, or 0 (no limit) when
// keepAlive is 0.
func KeepAliveTimeout(keepAlive uint16, backoff float64) time.Duration {
	if keepAlive == 0 {
		return 0
	}
	return time.Duration(math.Round(float64(keepAlive) * backoff * 2 * float64(time.Second)))
}
