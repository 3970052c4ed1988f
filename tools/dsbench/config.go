package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"
)

// Modes of a run.
const (
	modeStore = "store"
	modeRead  = "read"
	modeBoth  = "both"
)

// APIs of the store phase.
const (
	apiStore  = "store"
	apiIngest = "ingest"
)

// Config is one dsbench run. Every field is a flag; the comment gives the
// flag's default.
type Config struct {
	// Addr is dsd's gRPC address. Default 127.0.0.1:7070.
	Addr string `json:"addr"`
	// HTTPAddr is dsd's HTTP address, scraped for /metrics. Default: the host
	// of Addr, port 7071.
	HTTPAddr string `json:"http_addr"`
	// Mode is store, read or both. Default store.
	Mode string `json:"mode"`
	// Duration bounds the store phase, and separately the read phase.
	// Default 10s.
	Duration time.Duration `json:"duration_ns"`
	// Messages bounds the store phase by a message count (0: no bound). With
	// --mode read it is the number of messages stored before reading
	// (default then 100000).
	Messages int64 `json:"messages"`
	// Concurrency is the number of writer goroutines, each a publisher with
	// its own client id (so they spread over shards), and of readers.
	// Default 16.
	Concurrency int `json:"concurrency"`
	// Batch is the number of messages per Store. Default 1.
	Batch int `json:"batch"`
	// Payload is the payload size in bytes. Default 100.
	Payload int `json:"payload"`
	// Devices is the number of distinct values of the device level. Default 10000.
	Devices int `json:"devices"`
	// Levels is the number of topic levels after the prefix: the device
	// level, then fixed levels l1, l2, .... Default 3 (prefix/dev<i>/l1/l2).
	Levels int `json:"levels"`
	// TopicPrefix is the first topic level. Default "bench".
	TopicPrefix string `json:"topic_prefix"`
	// QoS is stored with every message (0..2). Default 1.
	QoS int `json:"qos"`
	// Producer sends producer state (epoch 1, consecutive sequence numbers)
	// with every Store, as the gateway does. Default false.
	Producer bool `json:"producer"`
	// ClientPrefix starts every publisher client id. Default
	// "dsbench-<random>-", so that runs never collide on producer state.
	ClientPrefix string `json:"client_prefix"`
	// Conns is the number of gRPC connections the workers share. Default 4.
	Conns int `json:"conns"`
	// API is how the store phase reaches dsd: "store" (a unary Store per
	// batch) or "ingest" (the gateways' ingest stream, one per connection,
	// which implies Producer). Default store.
	API string `json:"api"`
	// Filter is the read phase's topic filter. Default "<prefix>/#".
	Filter string `json:"filter"`
	// ReadBatch is max_messages of each Next. Default 100.
	ReadBatch int `json:"read_batch"`
	// Raw runs the store workload a second time straight into Pebble (via
	// storage.Raw) and reports dsd's ratio to it. Default false.
	Raw bool `json:"raw"`
	// RawDir is the data dir of the raw run, kept afterwards. Default: a
	// temporary dir, removed afterwards.
	RawDir string `json:"raw_dir"`
	// JSON prints the final report as JSON. Default false.
	JSON bool `json:"-"`
	// Progress is the interval of progress lines on stderr; 0 turns them
	// off. Default 1s.
	Progress time.Duration `json:"-"`
	// CallTimeout bounds each RPC. Default 30s.
	CallTimeout time.Duration `json:"-"`
}

func defaultConfig() Config {
	return Config{
		Addr:        "127.0.0.1:7070",
		Mode:        modeStore,
		Duration:    10 * time.Second,
		Concurrency: 16,
		Batch:       1,
		Payload:     100,
		Devices:     10000,
		Levels:      3,
		TopicPrefix: "bench",
		QoS:         1,
		Conns:       4,
		API:         apiStore,
		ReadBatch:   100,
		Progress:    time.Second,
		CallTimeout: 30 * time.Second,
	}
}

// registerFlags binds c's fields to fs, with c's values as defaults.
func (c *Config) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", c.Addr, "dsd gRPC address")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "dsd HTTP address for /metrics (default: host of --addr, port 7071)")
	fs.StringVar(&c.Mode, "mode", c.Mode, "store, read (store --messages, then read them) or both (store phase, then read it back)")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "bound of the store phase and of the read phase")
	fs.Int64Var(&c.Messages, "messages", c.Messages, "bound of the store phase in messages, 0 = none (--mode read: messages stored before reading, default 100000)")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "writer goroutines (one publisher client id each), and readers")
	fs.IntVar(&c.Batch, "batch", c.Batch, "messages per Store")
	fs.IntVar(&c.Payload, "payload", c.Payload, "payload bytes per message")
	fs.IntVar(&c.Devices, "devices", c.Devices, "distinct values of the device level")
	fs.IntVar(&c.Levels, "levels", c.Levels, "topic levels after the prefix: dev<i>, then l1, l2, ...")
	fs.StringVar(&c.TopicPrefix, "topic-prefix", c.TopicPrefix, "first topic level")
	fs.IntVar(&c.QoS, "qos", c.QoS, "QoS stored with each message")
	fs.BoolVar(&c.Producer, "producer", c.Producer, "send producer state (idempotent Stores) as the gateway does")
	fs.StringVar(&c.ClientPrefix, "client-prefix", c.ClientPrefix, "publisher client id prefix (default dsbench-<random>-)")
	fs.IntVar(&c.Conns, "conns", c.Conns, "gRPC connections shared by the workers")
	fs.StringVar(&c.API, "api", c.API, "store phase through unary Stores (store) or the gateways' ingest stream, one per connection (ingest; implies --producer)")
	fs.StringVar(&c.Filter, "filter", c.Filter, "read phase topic filter (default <prefix>/#)")
	fs.IntVar(&c.ReadBatch, "read-batch", c.ReadBatch, "max_messages per Next")
	fs.BoolVar(&c.Raw, "raw", c.Raw, "then run the same store workload straight into Pebble and report dsd/raw")
	fs.StringVar(&c.RawDir, "raw-dir", c.RawDir, "data dir of the raw run, kept (default: a temporary dir, removed)")
	fs.BoolVar(&c.JSON, "json", c.JSON, "print the final report as JSON")
	fs.DurationVar(&c.Progress, "progress", c.Progress, "progress line interval on stderr, 0 = off")
	fs.DurationVar(&c.CallTimeout, "call-timeout", c.CallTimeout, "deadline of each RPC")
}

// finish fills derived defaults and validates.
func (c *Config) finish(messagesSet bool) error {
	if c.HTTPAddr == "" {
		host, _, err := net.SplitHostPort(c.Addr)
		if err != nil {
			return fmt.Errorf("--addr %q: %w", c.Addr, err)
		}
		c.HTTPAddr = net.JoinHostPort(host, "7071")
	}
	if c.Mode == modeRead && !messagesSet {
		c.Messages = 100000
	}
	if c.ClientPrefix == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		c.ClientPrefix = "dsbench-" + hex.EncodeToString(b) + "-"
	}
	if c.Filter == "" {
		c.Filter = c.TopicPrefix + "/#"
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Mode {
	case modeStore, modeRead, modeBoth:
	default:
		bad("--mode %q: want store, read or both", c.Mode)
	}
	if c.Duration <= 0 {
		bad("--duration %v: must be > 0", c.Duration)
	}
	if c.Messages < 0 {
		bad("--messages %d: must be >= 0", c.Messages)
	}
	if c.Concurrency < 1 || c.Batch < 1 || c.Conns < 1 || c.ReadBatch < 1 || c.Devices < 1 || c.Levels < 1 {
		bad("--concurrency, --batch, --conns, --read-batch, --devices and --levels must be >= 1")
	}
	if c.Payload < 0 {
		bad("--payload %d: must be >= 0", c.Payload)
	}
	if c.QoS < 0 || c.QoS > 2 {
		bad("--qos %d: want 0, 1 or 2", c.QoS)
	}
	if c.TopicPrefix == "" || strings.ContainsAny(c.TopicPrefix, "/+#") {
		bad("--topic-prefix %q: want one non-empty topic level", c.TopicPrefix)
	}
	if c.Raw && c.Mode == modeRead {
		bad("--raw compares the store phase: use --mode store or both")
	}
	switch c.API {
	case apiStore:
	case apiIngest:
		c.Producer = true // the ingest stream requires producer state
		if c.Mode != modeStore {
			bad("--api ingest measures the store phase: use --mode store (a read phase needs the Stores' timestamps)")
		}
	default:
		bad("--api %q: want store or ingest", c.API)
	}
	if c.RawDir != "" && !c.Raw {
		bad("--raw-dir needs --raw")
	}
	if c.CallTimeout <= 0 {
		bad("--call-timeout %v: must be > 0", c.CallTimeout)
	}
	return errors.Join(errs...)
}
