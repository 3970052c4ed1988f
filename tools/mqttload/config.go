package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stratamq/strata/internal/checker"
)

// Publisher client libraries (--pub-client).
const (
	pubPaho = "paho"
	pubRec  = "mqttrec"
)

// Config is one mqttload run. Every field is a flag; the comment gives the
// flag and its default.
type Config struct {
	// Addr is the MQTT TCP address (--addr). Default 127.0.0.1:1883.
	Addr string `json:"addr"`
	// SubAddr2, when set, is where subscribers reconnect after going
	// offline, planned or not (--sub-addr2): another gateway.
	SubAddr2 string `json:"sub_addr2,omitempty"`
	// MQTT is the protocol version, 3 (3.1.1) or 5 (--mqtt). Default 5.
	MQTT int `json:"mqtt"`
	// PubClient is the publishers' client library, paho (paho.golang) or
	// mqttrec (--pub-client). Default paho; MQTT 3.1.1 always uses mqttrec,
	// as paho.golang speaks only MQTT 5.0.
	PubClient string `json:"pub_client"`
	// Publishers is the number of publishing clients (--publishers).
	// Default 1.
	Publishers int `json:"publishers"`
	// Subscribers is the number of subscribing clients, each subscribed to
	// Filter and so receiving every message (--subscribers). Default 1.
	Subscribers int `json:"subscribers"`
	// QoS is the publish QoS (--qos). Default 1.
	QoS int `json:"qos"`
	// SubQoS is the subscription's maximum QoS (--sub-qos). Default: QoS.
	SubQoS int `json:"sub_qos"`
	// Payload is the minimum payload size in bytes (--payload); a payload
	// is never smaller than its header (publisher, sequence, send time).
	// Default 64.
	Payload int `json:"payload"`
	// Topic is the topic name pattern; {dev} is replaced by a device
	// number (--topic). Default sensors/{dev}/temp.
	Topic string `json:"topic"`
	// Devices is the number of device numbers (--devices). Devices are dealt
	// out to publishers: publisher i cycles over devices i, i+P, i+2P, ...
	// (P publishers); with fewer devices than publishers, publisher i uses
	// device i mod Devices. Default: one per publisher.
	Devices int `json:"devices"`
	// Filter is the subscribers' topic filter (--filter). Default: Topic
	// with {dev} replaced by +.
	Filter string `json:"filter"`
	// Inflight is how many messages each publisher may have in flight
	// (sent and not yet acknowledged; at QoS 0, not yet written), at most
	// one per topic so that each topic's messages go out in order
	// (--inflight). The effective window is min(Inflight, the publisher's
	// topics). paho also waits for the server's Receive Maximum; mqttrec
	// does not, so with --pub-client mqttrec keep it at or below the
	// server's. Default 1: the next message goes out when the previous one
	// is acknowledged.
	Inflight int `json:"inflight"`
	// Rate is messages per second per publisher, 0 = as fast as acks come
	// back (--rate). Default 0.
	Rate float64 `json:"rate"`
	// Count is the number of messages per publisher, 0 = no limit
	// (--count). Default 0.
	Count int `json:"count"`
	// Duration bounds the publish phase, 0 = no limit (--duration).
	// Default 10s, or no limit when --count is given alone.
	Duration time.Duration `json:"duration_ns"`
	// Durable makes subscribers keep their session: clean start 0 when
	// reconnecting and a Session Expiry Interval (MQTT 5.0), clean session
	// 0 (3.1.1) (--durable). Default false.
	Durable bool `json:"durable"`
	// SessionExpiry is the durable subscribers' Session Expiry Interval in
	// seconds (--session-expiry, MQTT 5.0). Default 3600.
	SessionExpiry uint32 `json:"session_expiry"`
	// SubOfflineAt takes every subscriber offline (connection dropped
	// without DISCONNECT) that long after publishing starts, 0 = never
	// (--sub-offline-at).
	SubOfflineAt time.Duration `json:"sub_offline_at_ns,omitempty"`
	// SubOfflineFor is how long subscribers stay offline
	// (--sub-offline-for). Default 1s.
	SubOfflineFor time.Duration `json:"sub_offline_for_ns,omitempty"`
	// SubReceiveMax is the subscribers' Receive Maximum, the QoS 1 and 2
	// messages the server may have in flight to each, which mqttrec
	// checks (--sub-receive-max, MQTT 5.0). Default 0: not sent, which
	// means 65,535. (mosquitto 2.0.11 exceeds a small Receive Maximum at
	// QoS 2 and can then stall; see docs/mqttload.md.)
	SubReceiveMax int `json:"sub_receive_max"`
	// Retain publishes every message retained, and at the end a late
	// subscriber checks each topic's retained value (--retain).
	Retain bool `json:"retain,omitempty"`
	// Queued switches to offline-queue replay: durable subscribers
	// subscribe and disconnect, publishers send this many messages in
	// total, then the subscribers reconnect and the replay is timed
	// (--queued). Default 0 (live mode).
	Queued int `json:"queued,omitempty"`
	// Drain is how long to wait after publishing for subscribers to
	// receive everything (--drain). Default 10s.
	Drain time.Duration `json:"drain_ns"`
	// Timeout bounds each publish's wait for its acknowledgement and each
	// connect (--timeout). Default 10s.
	Timeout time.Duration `json:"timeout_ns"`
	// KeepAlive in seconds for every client (--keepalive). Default 30.
	KeepAlive int `json:"keepalive"`
	// Username and Password authenticate every client (--username,
	// --password). Default none.
	Username string `json:"username,omitempty"`
	Password string `json:"-"`
	// ClientPrefix starts every client id (--client-prefix). Default
	// mqttload-<random>-, so runs never share sessions.
	ClientPrefix string `json:"client_prefix"`
	// History is a file to write the history to, as JSON lines
	// (--history). Default none.
	History string `json:"history,omitempty"`
	// Check runs internal/checker on the history and fails the run on
	// a violation (--check).
	Check bool `json:"check"`
	// JSON prints the final summary as one JSON object (--json).
	JSON bool `json:"-"`
	// Progress is the interval of progress lines on stderr, 0 = off
	// (--progress). Default 1s.
	Progress time.Duration `json:"-"`
}

func defaultConfig() Config {
	return Config{
		Addr:          "127.0.0.1:1883",
		MQTT:          5,
		PubClient:     pubPaho,
		Publishers:    1,
		Inflight:      1,
		Subscribers:   1,
		QoS:           1,
		SubQoS:        -1,
		Payload:       64,
		Topic:         "sensors/{dev}/temp",
		Duration:      10 * time.Second,
		SessionExpiry: 3600,
		SubOfflineFor: time.Second,
		Drain:         10 * time.Second,
		Timeout:       10 * time.Second,
		KeepAlive:     30,
		Progress:      time.Second,
	}
}

// registerFlags binds c's fields to fs, with c's values as defaults.
func (c *Config) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", c.Addr, "MQTT TCP address")
	fs.StringVar(&c.SubAddr2, "sub-addr2", c.SubAddr2, "address subscribers reconnect to after going offline (default --addr)")
	fs.IntVar(&c.MQTT, "mqtt", c.MQTT, "MQTT version: 3 (3.1.1) or 5")
	fs.StringVar(&c.PubClient, "pub-client", c.PubClient, "publisher client: paho (paho.golang, MQTT 5 only) or mqttrec")
	fs.IntVar(&c.Publishers, "publishers", c.Publishers, "publishing clients")
	fs.IntVar(&c.Subscribers, "subscribers", c.Subscribers, "subscribing clients, each receiving every message")
	fs.IntVar(&c.QoS, "qos", c.QoS, "publish QoS")
	fs.Func("sub-qos", "subscription maximum QoS (default --qos)", func(v string) error {
		n, err := strconv.Atoi(v)
		if err == nil && (n < 0 || n > 2) {
			err = fmt.Errorf("want 0, 1 or 2")
		}
		c.SubQoS = n
		return err
	})
	fs.IntVar(&c.Payload, "payload", c.Payload, "minimum payload bytes (the header: publisher, sequence, send time)")
	fs.StringVar(&c.Topic, "topic", c.Topic, "topic name; {dev} is replaced by a device number")
	fs.IntVar(&c.Devices, "devices", c.Devices, "device numbers, dealt out to publishers round robin (default one per publisher)")
	fs.StringVar(&c.Filter, "filter", c.Filter, "subscription filter (default --topic with {dev} as +)")
	fs.IntVar(&c.Inflight, "inflight", c.Inflight, "messages each publisher may have unacknowledged, at most one per topic (see --devices)")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "messages/s per publisher, 0 = as fast as acks return")
	fs.IntVar(&c.Count, "count", c.Count, "messages per publisher, 0 = no limit")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "publish phase length, 0 = no limit (no limit when --count is given alone)")
	fs.BoolVar(&c.Durable, "durable", c.Durable, "subscribers keep their session across reconnects")
	fs.Func("session-expiry", fmt.Sprintf("durable session expiry in seconds, MQTT 5 (default %d)", c.SessionExpiry), func(s string) error {
		v, err := strconv.ParseUint(s, 10, 32)
		c.SessionExpiry = uint32(v)
		return err
	})
	fs.DurationVar(&c.SubOfflineAt, "sub-offline-at", c.SubOfflineAt, "drop every subscriber's connection this long into publishing, 0 = never")
	fs.DurationVar(&c.SubOfflineFor, "sub-offline-for", c.SubOfflineFor, "how long subscribers stay offline")
	fs.IntVar(&c.SubReceiveMax, "sub-receive-max", c.SubReceiveMax, "subscribers' Receive Maximum, MQTT 5 (0 = not sent: 65535)")
	fs.BoolVar(&c.Retain, "retain", c.Retain, "publish retained; a late subscriber checks the retained values at the end")
	fs.IntVar(&c.Queued, "queued", c.Queued, "offline-queue replay mode: queue this many messages in total for offline durable subscribers, then time their replay")
	fs.DurationVar(&c.Drain, "drain", c.Drain, "longest wait after publishing for subscribers to receive everything")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "deadline of each connect and of each publish's acknowledgement")
	fs.IntVar(&c.KeepAlive, "keepalive", c.KeepAlive, "keep alive seconds of every client")
	fs.StringVar(&c.Username, "username", c.Username, "username of every client")
	fs.StringVar(&c.Password, "password", c.Password, "password of every client")
	fs.StringVar(&c.ClientPrefix, "client-prefix", c.ClientPrefix, "client id prefix (default mqttload-<random>-)")
	fs.StringVar(&c.History, "history", c.History, "write the history to this file as JSON lines")
	fs.BoolVar(&c.Check, "check", c.Check, "judge the history with internal/checker; exit 1 on a violation")
	fs.BoolVar(&c.JSON, "json", c.JSON, "print the final summary as one JSON object")
	fs.DurationVar(&c.Progress, "progress", c.Progress, "progress line interval on stderr, 0 = off")
}

// finish fills derived defaults and validates. set names the flags given
// on the command line.
func (c *Config) finish(set map[string]bool) error {
	if set["count"] && !set["duration"] {
		c.Duration = 0
	}
	if c.SubQoS < 0 {
		c.SubQoS = c.QoS
	}
	if c.Devices == 0 {
		c.Devices = c.Publishers
	}
	if c.Filter == "" {
		c.Filter = strings.ReplaceAll(c.Topic, "{dev}", "+")
	}
	if c.ClientPrefix == "" {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		c.ClientPrefix = "mqttload-" + hex.EncodeToString(b) + "-"
	}
	if c.MQTT == 3 {
		c.PubClient = pubRec
	}
	if c.Queued > 0 {
		c.Durable = true
		c.Duration = 0
		c.Count = (c.Queued + c.Publishers - 1) / max(c.Publishers, 1)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.MQTT != 3 && c.MQTT != 5 {
		bad("--mqtt %d: want 3 or 5", c.MQTT)
	}
	if c.PubClient != pubPaho && c.PubClient != pubRec {
		bad("--pub-client %q: want paho or mqttrec", c.PubClient)
	}
	if c.Publishers < 1 || c.Devices < 1 {
		bad("--publishers and --devices must be >= 1")
	}
	if c.Inflight < 1 || c.Inflight > 65535 {
		bad("--inflight %d: want 1 to 65535", c.Inflight)
	}
	if c.Subscribers < 0 {
		bad("--subscribers %d: must be >= 0", c.Subscribers)
	}
	if c.QoS < 0 || c.QoS > 2 || c.SubQoS > 2 {
		bad("--qos and --sub-qos: want 0, 1 or 2")
	}
	if c.Payload < 0 || c.Payload > 1<<20 {
		bad("--payload %d: want 0 to 1 MiB", c.Payload)
	}
	if c.Rate < 0 || c.Count < 0 || c.Duration < 0 || c.Queued < 0 {
		bad("--rate, --count, --duration and --queued must be >= 0")
	}
	if c.Count == 0 && c.Duration == 0 && c.Queued == 0 {
		bad("give --count or --duration (or --queued): the publish phase needs an end")
	}
	if strings.Count(c.Topic, "{dev}") > 1 {
		bad("--topic %q: {dev} at most once", c.Topic)
	}
	if strings.ContainsAny(c.Topic, "+#") {
		bad("--topic %q: a topic name has no wildcards", c.Topic)
	}
	if c.SubOfflineAt > 0 && !c.Durable {
		bad("--sub-offline-at without --durable: messages published while offline are lost by design")
	}
	if c.Queued > 0 && c.Subscribers < 1 {
		bad("--queued needs --subscribers >= 1")
	}
	if c.Queued > 0 && min(c.QoS, c.SubQoS) < 1 {
		bad("--queued needs --qos and --sub-qos >= 1: QoS 0 messages are not queued")
	}
	if c.Queued > 0 && (c.SubOfflineAt > 0 || c.Retain) {
		bad("--queued does not combine with --sub-offline-at or --retain")
	}
	if c.Drain <= 0 || c.Timeout <= 0 {
		bad("--drain and --timeout must be > 0")
	}
	if c.SubReceiveMax < 0 || c.SubReceiveMax > 65535 {
		bad("--sub-receive-max %d: want 0 to 65535", c.SubReceiveMax)
	}
	if c.KeepAlive < 0 || c.KeepAlive > 65535 {
		bad("--keepalive %d: want 0 to 65535", c.KeepAlive)
	}
	return errors.Join(errs...)
}

// topicsOf returns the topics publisher i cycles over.
func (c *Config) topicsOf(i int) []string {
	if !strings.Contains(c.Topic, "{dev}") {
		return []string{c.Topic}
	}
	var devs []int
	if c.Devices < c.Publishers {
		devs = []int{i % c.Devices}
	} else {
		for d := i; d < c.Devices; d += c.Publishers {
			devs = append(devs, d)
		}
	}
	out := make([]string, len(devs))
	for k, d := range devs {
		out[k] = strings.ReplaceAll(c.Topic, "{dev}", strconv.Itoa(d))
	}
	return out
}

// filterCoversAll reports whether the subscription filter matches every
// topic, so each subscriber should receive every acked message.
func (c *Config) filterCoversAll() bool {
	for i := range c.Publishers {
		for _, t := range c.topicsOf(i) {
			if !checker.Match(c.Filter, t) {
				return false
			}
		}
	}
	return true
}

// effectiveQoS is the QoS subscribers receive at.
func (c *Config) effectiveQoS() int { return min(c.QoS, c.SubQoS) }

func (c *Config) pubName(i int) string { return fmt.Sprintf("%spub%d", c.ClientPrefix, i) }
func (c *Config) subName(i int) string { return fmt.Sprintf("%ssub%d", c.ClientPrefix, i) }
