package config

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Config is the whole schema. Field comments give each key's default.
type Config struct {
	DurableSessions DurableSessions `toml:"durable_sessions"`
	DurableStorage  DurableStorage  `toml:"durable_storage"`
	MQTT            MQTT            `toml:"mqtt"`
	// Zone holds per-zone overrides, keyed by zone name ("default" always exists).
	Zone map[string]Zone `toml:"zone"`
	// Listeners maps listener type (tcp, ws, tls, wss) to named listeners.
	Listeners map[string]map[string]Listener `toml:"listeners"`
	DSD       DSD                            `toml:"dsd"`
	Gateway   Gateway                        `toml:"gateway"`
	// Auth and ACL are the gateway's authentication and authorization (config/auth.go).
	Auth Auth `toml:"auth"`
	ACL  ACL  `toml:"acl"`

	// MaxClockSkew: when dsd starts with the wall clock this far behind the
	// persisted shard clock, idle ticks are suspended until it catches up. Default 1m.
	MaxClockSkew Duration `toml:"max_clock_skew"`
	// UnsafePlaintextListen allows a non-loopback dsd listener without TLS. Default false.
	UnsafePlaintextListen bool `toml:"unsafe_plaintext_listen"`
	// UnsafeNoSync commits without fsync: acked messages can be lost on a
	// machine crash. Only for proving the history checker. Default false.
	UnsafeNoSync bool `toml:"unsafe_no_sync"`
}

// DurableSessions are the durable_sessions.* keys.
type DurableSessions struct {
	// Enable keeps subscriptions and delivery state of sessions with expiry > 0 in dsd. Default true.
	Enable bool `toml:"enable"`
	// MessageRetentionPeriod drives generation rotation and drop: dsd passes
	// it as storage.Options.RetentionPeriod. Default 1d; 0 turns rotation and
	// drop off (every message is kept); negative is invalid.
	MessageRetentionPeriod Duration `toml:"message_retention_period"`
	// BatchSize is messages per pushed batch / replay record. Default 100.
	BatchSize int `toml:"batch_size"`
	// IdlePollInterval is dsd's per-shard safety-net rescan. Default 10s.
	IdlePollInterval Duration `toml:"idle_poll_interval"`
	// HeartbeatInterval is the gateway's session checkpoint period. Default 5s.
	HeartbeatInterval Duration `toml:"heartbeat_interval"`
	// GatewayHeartbeatInterval is the gateway lease heartbeat. Default 2s.
	GatewayHeartbeatInterval Duration `toml:"gateway_heartbeat_interval"`
	// RenewStreamsInterval is dsd's per-shard safety-net stream listing. Default 10s.
	RenewStreamsInterval Duration `toml:"renew_streams_interval"`
	// SessionGCInterval is the sweep that reclaims expired sessions. Default 10m.
	SessionGCInterval Duration `toml:"session_gc_interval"`
	// MaxBatchesPerStream is batch records unfinished per stream (1..64). Default 16.
	MaxBatchesPerStream int `toml:"max_batches_per_stream"`
	// MaxLinkEntries bounds the live Watch and Read entries of one gateway
	// link in dsd (each holds a goroutine); past it an entry is refused and
	// the gateway answers quota exceeded (0x97). Default 200000.
	MaxLinkEntries int `toml:"max_link_entries"`
}

// DurableStorage holds durable_storage.messages.*.
type DurableStorage struct {
	Messages Messages `toml:"messages"`
}

// Messages are the durable_storage.messages.* keys.
type Messages struct {
	// DataDir is the site's data directory. Default "data".
	DataDir string `toml:"data_dir"`
	// NShards is fixed at first start. Default 16.
	NShards int `toml:"n_shards"`
	// NSites is how many sites must be members of the cluster before the
	// shards are first allocated to sites. Default 1 (a site alone
	// allocates at its first start).
	NSites int `toml:"n_sites"`
	// ReplicationFactor is the replicas per shard of an allocation, clamped
	// to the number of sites: min(sites, replication_factor). Data is not
	// replicated yet; the metadata records the placement. Default 3.
	ReplicationFactor int `toml:"replication_factor"`
	// MinFreeBytes is the free-space watermark of the data dir's filesystem:
	// under it dsd refuses writes (RESOURCE_EXHAUSTED, "dsd: disk full")
	// and serves reads; writes resume above it + 25%. 0 turns it off.
	// Default 256MiB.
	MinFreeBytes Size `toml:"min_free_bytes"`
	// DiskCheckInterval is how often dsd reads the free space (statfs). Default 1s.
	DiskCheckInterval Duration `toml:"disk_check_interval"`
	// EmergencyBallastBytes is the size of the file EMERGENCY-BALLAST that dsd
	// keeps in the data dir and deletes when a write meets ENOSPC, so that
	// the writes in flight find room. 0 turns it off. Default 64MiB.
	EmergencyBallastBytes Size `toml:"emergency_ballast_bytes"`
	// TailCacheBytes bounds the in-memory tail cache of recently written
	// messages that live readers are served from. 0 turns it off. Default 64MiB.
	TailCacheBytes   Size             `toml:"tail_cache_bytes"`
	LocalWriteBuffer LocalWriteBuffer `toml:"local_write_buffer"`
	Layout           Layout           `toml:"layout"`
}

// LocalWriteBuffer are the durable_storage.messages.local_write_buffer.* keys.
type LocalWriteBuffer struct {
	// MaxItems flushes a shard buffer at this many messages. Default 1000.
	MaxItems int `toml:"max_items"`
	// MaxBytes flushes a shard buffer at this many bytes. Default 4MiB.
	MaxBytes Size `toml:"max_bytes"`
	// FlushInterval is the longest a message waits while a commit is in flight. Default 1ms.
	FlushInterval Duration `toml:"flush_interval"`
}

// Layout are the durable_storage.messages.layout.* keys; they affect new generations only.
type Layout struct {
	// Type of new generations: "wildcard_optimized_v2" (time-first keys,
	// everything committed readable at once) or "wildcard_optimized" (v1:
	// wildcard streams readable by whole epochs). Default
	// "wildcard_optimized_v2".
	Type string `toml:"type"`
	// BitsPerTopicLevel is the hash width of a varying level, a multiple of 8. Default 64.
	BitsPerTopicLevel int `toml:"bits_per_topic_level"`
	// EpochBits: an epoch is 2^EpochBits µs; wildcard_optimized only. Default 20.
	EpochBits int `toml:"epoch_bits"`
	// TopicIndexBytes is the static index width. Default 4.
	TopicIndexBytes int `toml:"topic_index_bytes"`
	// WildcardThresholds are the LTS thresholds: first level, deeper levels. Default [100, 20].
	WildcardThresholds []int `toml:"wildcard_thresholds"`
	// MaxTrieStates: past it, new values are learned as varying. Default 100000.
	MaxTrieStates int `toml:"max_trie_states"`
}

// MQTT are the mqtt.* keys.
type MQTT struct {
	// SessionExpiryInterval is the expiry of 3.1.1 clean-session-false sessions. Default 2h.
	SessionExpiryInterval Duration `toml:"session_expiry_interval"`
	// MaxSessionExpiry caps MQTT 5 Session Expiry; 0 means no cap. Default 0.
	MaxSessionExpiry Duration `toml:"max_session_expiry"`
	// MaxPacketSize is the largest message. Default 1MiB.
	MaxPacketSize Size `toml:"max_packet_size"`
	// ReceiveMaximum is the inbound inflight the gateway accepts. Default 32.
	ReceiveMaximum int `toml:"receive_maximum"`
	// MaxInflight caps the outbound QoS 1/2 PUBLISHes unacknowledged per
	// client, below its Receive Maximum. Default 256.
	MaxInflight int `toml:"max_inflight"`
	// SharedSubscriptionStrategy is how a shared group ($share/...) picks
	// the member of each batch: round_robin, random, sticky, hash_clientid
	// or hash_topic (EMQX's names). Default round_robin.
	SharedSubscriptionStrategy string `toml:"shared_subscription_strategy"`
	// MaxConnRate is the CONNECT admission rate per second. Default 1000/s.
	MaxConnRate Rate `toml:"max_conn_rate"`
	// AllowCrossIdentityTakeover lets another username take over a client id. Default false.
	AllowCrossIdentityTakeover bool `toml:"allow_cross_identity_takeover"`
	// ConnectTimeout closes a connection that has not sent its CONNECT this
	// long after it was accepted (PROXY header and TLS handshake included). Default 10s.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// MaxConnectPacketSize is the largest first packet (the CONNECT) a
	// connection may send; larger closes it. Default 64KiB.
	MaxConnectPacketSize Size `toml:"max_connect_packet_size"`
	// MaxTopicAliasOutbound is the most Topic Aliases the gateway gives the
	// topics it sends to one MQTT 5 client (fewer when the client's Topic
	// Alias Maximum is lower); 0 sends none. Default 64.
	MaxTopicAliasOutbound int `toml:"max_topic_alias_outbound"`
	// MaxInboundBytes is the most PUBLISH bytes one connection may have
	// accepted and not yet stored in dsd; past it the gateway stops reading
	// the connection until Stores free room. Default 8MiB.
	MaxInboundBytes Size `toml:"max_inbound_bytes"`
}

// Zone holds the per-zone keys; unset fields inherit the global value.
type Zone struct {
	// ServerKeepalive, when set, overrides MQTT 5 clients' Keep Alive (sent in CONNACK).
	ServerKeepalive *Duration `toml:"server_keepalive"`
	// KeepaliveBackoff: the timeout is keepalive × backoff × 2. Default 0.75.
	KeepaliveBackoff *float64 `toml:"keepalive_backoff"`
	// MaxKeepalive refuses 3.1.1 clients asking for more (CONNACK 0x02). Default unset.
	MaxKeepalive    *Duration            `toml:"max_keepalive"`
	DurableSessions *ZoneDurableSessions `toml:"durable_sessions"`
	MQTT            *ZoneMQTT            `toml:"mqtt"`
}

// ZoneDurableSessions are the durable_sessions keys a zone may override.
type ZoneDurableSessions struct {
	Enable               *bool     `toml:"enable"`
	BatchSize            *int      `toml:"batch_size"`
	IdlePollInterval     *Duration `toml:"idle_poll_interval"`
	RenewStreamsInterval *Duration `toml:"renew_streams_interval"`
}

// ZoneMQTT are the mqtt keys a zone may override.
type ZoneMQTT struct {
	SessionExpiryInterval *Duration `toml:"session_expiry_interval"`
	MaxSessionExpiry      *Duration `toml:"max_session_expiry"`
	MaxPacketSize         *Size     `toml:"max_packet_size"`
	ReceiveMaximum        *int      `toml:"receive_maximum"`
	MaxInflight           *int      `toml:"max_inflight"`
	MaxConnRate           *Rate     `toml:"max_conn_rate"`
	MaxTopicAliasOutbound *int      `toml:"max_topic_alias_outbound"`
	// SharedSubscriptionStrategy: as MQTT's.
	SharedSubscriptionStrategy *string `toml:"shared_subscription_strategy"`
}

// Listener is one gateway listener (listeners.<type>.<name>.*).
type Listener struct {
	// Bind is the listen address. Default 127.0.0.1:1883 for tcp.default.
	Bind string `toml:"bind"`
	// Zone the listener belongs to. Default "default".
	Zone string `toml:"zone"`
	// CertFile and KeyFile are the TLS certificate and key (tls, wss).
	CertFile string `toml:"certfile"`
	KeyFile  string `toml:"keyfile"`
	// CACertFile verifies client certificates when VerifyPeer is set.
	CACertFile string `toml:"cacertfile"`
	VerifyPeer bool   `toml:"verify_peer"`
	// UseIdentityAsUsername makes a name from the client's verified
	// certificate the MQTT username, authenticated by the certificate (no
	// password is checked; the CONNECT's username is replaced): "cn" (the
	// subject's Common Name), "san_dns" or "san_email" (the first Subject
	// Alternative Name of that kind). Only on tls and wss listeners with
	// verify_peer. Default "" (off).
	UseIdentityAsUsername string `toml:"use_identity_as_username,omitempty"`
	// Path is the WebSocket path. Default "/mqtt".
	Path string `toml:"path"`
	// AllowedOrigins are the Origin header patterns a WebSocket upgrade may
	// carry (ws, wss): a host pattern ("*.example.com") or scheme and host
	// ("https://app.example.com"). A request without Origin (not a browser) is
	// allowed. Default none: only an Origin naming the request's own Host.
	AllowedOrigins []string `toml:"allowed_origins,omitempty"`
	// AllowAnonymous, when set, replaces auth.allow_anonymous on this
	// listener. Default unset: auth.allow_anonymous for tcp and tls, false for
	// ws and wss.
	AllowAnonymous *AnonymousMode `toml:"allow_anonymous,omitempty"`
	// ProxyProtocol requires a PROXY protocol v1 or v2 header at the start
	// of every connection; the client's address is taken from it. Default false
	// (a PROXY header is then garbage and closes the connection).
	ProxyProtocol bool `toml:"proxy_protocol,omitempty"`
}

// DSD are dsd's own listener keys (dsd.*); the flags --grpc-listen and --http-listen override them.
type DSD struct {
	// GRPCListen is the gRPC API address. Default 127.0.0.1:7070.
	GRPCListen string `toml:"grpc_listen"`
	// HTTPListen serves /metrics, /healthz, /readyz and the REST API. Default 127.0.0.1:7071.
	HTTPListen string `toml:"http_listen"`
	// TLS secures both listeners when CertFile is set.
	TLS DSDTLS `toml:"tls"`
	// MaxConcurrentStreams bounds the concurrent gRPC calls of one client
	// connection; more wait in the client. Default 1024.
	MaxConcurrentStreams int `toml:"max_concurrent_streams"`
	// Join is the gRPC address of any site of a cluster, which a site joins
	// at its first start (the flag --join overrides it); ignored once the
	// site is a member. Default "" (a new cluster).
	Join string `toml:"join"`
	// AdvertiseAddress is the gRPC address other sites dial to reach this
	// one. Default "" (the bound gRPC address, which must then not be an
	// unspecified address such as 0.0.0.0).
	AdvertiseAddress string `toml:"advertise_address"`
}

// DSDTLS are dsd's TLS keys (dsd.tls.*). With CACertFile set, clients must
// present a certificate signed by it (mTLS) and get the role that Roles maps
// their certificate's Common Name to.
type DSDTLS struct {
	// CertFile and KeyFile are dsd's certificate and key (PEM). Default unset (no TLS).
	CertFile string `toml:"certfile"`
	KeyFile  string `toml:"keyfile"`
	// CACertFile verifies client certificates (mTLS). Default unset.
	CACertFile string `toml:"cacertfile"`
	// Roles maps a client certificate's Common Name to gateway, service or
	// admin. Unmapped verified clients get DefaultRole.
	Roles map[string]string `toml:"roles"`
	// DefaultRole is the role of a verified client whose name is not in Roles. Default "service".
	DefaultRole string `toml:"default_role"`
}

// Gateway are the gateway's own keys (gateway.*).
type Gateway struct {
	// DSD is the address of dsd's gRPC API, or a comma-separated list of
	// sites of a cluster, any one enough to discover the others. Default
	// 127.0.0.1:7070.
	DSD string `toml:"dsd"`
	// HTTPListen serves the gateway's /metrics and /healthz. Default 127.0.0.1:7072.
	HTTPListen string `toml:"http_listen"`
	// MaxConnections is the most MQTT connections (sockets, before and after
	// CONNECT) the gateway holds; more are closed at accept. 0: no limit. Default 1000000
	// (the file descriptors of the systemd unit).
	MaxConnections int `toml:"max_connections"`
	// MaxConnectionsPerAddress is the most connections from one client IP
	// address; more are closed at accept. 0: no limit. Default 10000: high
	// enough for devices behind one NAT or a load balancer that sends no PROXY
	// header, low enough that one host cannot hold the gateway's sockets.
	MaxConnectionsPerAddress int `toml:"max_connections_per_address"`
	// SysInterval is how often the gateway publishes its $SYS topics to
	// its own clients (never stored); 0 turns them off. Default 1m.
	SysInterval Duration `toml:"sys_interval"`
	// DSDTLS is how the gateway reaches dsd over TLS (gateway.dsd_tls.*).
	DSDTLS GatewayDSDTLS `toml:"dsd_tls"`
}

// GatewayDSDTLS are the gateway's keys for dialing dsd (gateway.dsd_tls.*).
// With a certificate, dsd (dsd.tls.cacertfile set) maps its Common Name to
// a role (dsd.tls.roles, which must say "gateway"), and the gateway's id
// must be one of the certificate's names; it defaults to the Common Name.
type GatewayDSDTLS struct {
	// Enable dials dsd over TLS. Default false (plaintext, for a dsd on the
	// same host's loopback).
	Enable bool `toml:"enable"`
	// CertFile and KeyFile are the gateway's client certificate and key
	// (PEM), set together. Default unset (no client certificate).
	CertFile string `toml:"certfile"`
	KeyFile  string `toml:"keyfile"`
	// CACertFile verifies dsd's certificate. Default unset: the system roots.
	CACertFile string `toml:"cacertfile"`
	// ServerName is the name checked in dsd's certificate. Default unset:
	// the host of gateway.dsd.
	ServerName string `toml:"server_name"`
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		DurableSessions: DurableSessions{
			Enable:                   true,
			MessageRetentionPeriod:   Duration(24 * 3600e9),
			BatchSize:                100,
			IdlePollInterval:         Duration(10e9),
			HeartbeatInterval:        Duration(5e9),
			GatewayHeartbeatInterval: Duration(2e9),
			RenewStreamsInterval:     Duration(10e9),
			SessionGCInterval:        Duration(600e9),
			MaxBatchesPerStream:      16,
			MaxLinkEntries:           500000,
		},
		DurableStorage: DurableStorage{Messages: Messages{
			DataDir:               "data",
			NShards:               16,
			NSites:                1,
			ReplicationFactor:     3,
			MinFreeBytes:          256 << 20,
			DiskCheckInterval:     Duration(1e9),
			EmergencyBallastBytes: 64 << 20,
			TailCacheBytes:        64 << 20,
			LocalWriteBuffer:      LocalWriteBuffer{MaxItems: 1000, MaxBytes: 4 << 20, FlushInterval: Duration(1e6)},
			Layout: Layout{
				Type:               "wildcard_optimized_v2",
				BitsPerTopicLevel:  64,
				EpochBits:          20,
				TopicIndexBytes:    4,
				WildcardThresholds: []int{100, 20},
				MaxTrieStates:      100000,
			},
		}},
		MQTT: MQTT{
			SessionExpiryInterval:      Duration(2 * 3600e9),
			MaxPacketSize:              1 << 20,
			ReceiveMaximum:             32,
			MaxInflight:                256,
			MaxConnRate:                1000,
			SharedSubscriptionStrategy: "round_robin",
			ConnectTimeout:             Duration(10e9),
			MaxConnectPacketSize:       64 << 10,
			MaxInboundBytes:            8 << 20,
			MaxTopicAliasOutbound:      64,
		},
		Zone:      map[string]Zone{"default": {}},
		Listeners: map[string]map[string]Listener{"tcp": {"default": {Bind: "127.0.0.1:1883", Zone: "default"}}},
		DSD:       DSD{GRPCListen: "127.0.0.1:7070", HTTPListen: "127.0.0.1:7071", TLS: DSDTLS{DefaultRole: "service"}, MaxConcurrentStreams: 1024},
		Gateway:   Gateway{DSD: "127.0.0.1:7070", HTTPListen: "127.0.0.1:7072", MaxConnections: 1000000, MaxConnectionsPerAddress: 10000, SysInterval: Duration(60e9)},
		Auth: Auth{
			AllowAnonymous:   AnonymousLoopback,
			Hash:             "bcrypt",
			BcryptCost:       10,
			PBKDF2Iterations: 210000,
			CacheTTL:         Duration(300e9),
			CacheSize:        100000,

			MaxFailuresPerAddress:  30,
			MaxFailuresPerUsername: 10,
			FailureTableSize:       100000,
			JWT:                    JWT{Algorithm: "HS256", Leeway: Duration(5e9)},
		},
		ACL:          ACL{DenyAction: DenyIgnore},
		MaxClockSkew: Duration(60e9),
	}
}

// Load reads the TOML file at path over the defaults. An empty path gives the defaults.
func Load(path string) (Config, error) {
	cfg := Default()
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	if err := Parse(data, &cfg); err != nil {
		return cfg, fmt.Errorf("config: %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes TOML data over cfg. Keys the schema does not know are an error.
func Parse(data []byte, cfg *Config) error {
	// A file that sets listeners replaces the default listener set rather than
	// merging with it, so an operator can move the MQTT port.
	cfg.Listeners = nil
	md, err := toml.Decode(string(data), cfg)
	if err != nil {
		return err
	}
	if cfg.Listeners == nil {
		cfg.Listeners = Default().Listeners
	}
	if cfg.Zone == nil {
		cfg.Zone = map[string]Zone{}
	}
	if _, ok := cfg.Zone["default"]; !ok {
		cfg.Zone["default"] = Zone{}
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return fmt.Errorf("%w: unknown key(s): %s", ErrInvalid, strings.Join(keys, ", "))
	}
	return nil
}

// String prints the effective configuration as TOML.
func (c Config) String() string {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return fmt.Sprintf("config: cannot print: %v", err)
	}
	return buf.String()
}
