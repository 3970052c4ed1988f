package realclients

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/internal/testutil/wait"
)

// connOpts are a CONNECT's settings.
type connOpts struct {
	clientID string
	version  int // 4 (MQTT 3.1.1) or 5
	clean    bool
	expiry   uint32 // Session Expiry Interval in seconds (MQTT 5)
	// topicAliasMax is the Topic Alias Maximum announced (MQTT 5; only
	// the MQTT.js agents take it).
	topicAliasMax int
}

// connack is a CONNACK as a client reports it.
type connack struct {
	sessionPresent bool
	// known is false for a client that does not tell (mosquitto_sub).
	known  bool
	reason int
}

// message is one PUBLISH a client received.
type message struct {
	Topic   string `json:"topic"`
	Payload string `json:"payload"`
	QoS     int    `json:"qos"`
	Dup     bool   `json:"dup"`
	Retain  bool   `json:"retain"`
	// Alias is the Topic Alias the PUBLISH carried (MQTT.js agents).
	Alias int `json:"alias"`
}

// driver is one client implementation holding MQTT clients in named slots.
// Each call returns once the broker has answered (CONNACK, SUBACK, the last
// PUBACK or PUBCOMP); messages are acknowledged by the client library as it
// receives them and kept per slot in arrival order.
type driver interface {
	connect(ctx context.Context, slot string, o connOpts) (connack, error)
	subscribe(ctx context.Context, slot, filter string, qos int) ([]int, error)
	publish(ctx context.Context, slot, topic string, payloads []string, qos int) error
	disconnect(ctx context.Context, slot string) error
	messages(slot string) []message
	// close ends the client runtime; it reports a runtime that failed.
	close() error
}

// roundTimeout bounds one round; a round takes well under a second when
// the broker behaves.
const roundTimeout = 30 * time.Second

func payloads(prefix string, n int) []string {
	p := make([]string, n)
	for i := range p {
		p[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return p
}

func mustDo(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// resumeRound: a durable subscriber (clean start / clean session off, a
// session expiry in MQTT 5) subscribes at QoS 1 and disconnects; a
// publisher of the same client library sends 10 messages at QoS 1 and 10 at QoS 2
// while it is away; the broker restarts (Strata: a new gateway process on
// the same addresses and dsd); the subscriber reconnects without
// subscribing (mosquitto_sub subscribes again, as it always does), finds
// its session and receives all 20 in order, once each, then publishes one
// more itself and receives it live.
func resumeRound(t *testing.T, b *broker, d driver, version int, tag string) {
	ctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
	defer cancel()
	topic := "rc/" + tag + "/resume"
	durable := connOpts{clientID: tag + "-sub", version: version, expiry: 3600}
	sub, pub := tag+"/sub", tag+"/pub" // slots

	ack, err := d.connect(ctx, sub, durable)
	mustDo(t, "subscriber connect", err)
	if ack.known && (ack.reason != 0 || ack.sessionPresent) {
		t.Fatalf("first CONNACK: reason %#x, session present %t; want 0, false", ack.reason, ack.sessionPresent)
	}
	codes, err := d.subscribe(ctx, sub, topic, 1)
	mustDo(t, "subscribe", err)
	if !slices.Equal(codes, []int{1}) {
		t.Fatalf("SUBACK %v for %s at QoS 1, want [1]", codes, topic)
	}
	mustDo(t, "subscriber disconnect", d.disconnect(ctx, sub))
	if b.away != nil {
		b.away(t, durable.clientID)
	}

	q1, q2 := payloads("q1-", 10), payloads("q2-", 10)
	_, err = d.connect(ctx, pub, connOpts{clientID: tag + "-pub", version: version, clean: true})
	mustDo(t, "publisher connect", err)
	mustDo(t, "publish at QoS 1", d.publish(ctx, pub, topic, q1, 1))
	mustDo(t, "publish at QoS 2", d.publish(ctx, pub, topic, q2, 2))
	mustDo(t, "publisher disconnect", d.disconnect(ctx, pub))

	b.restart(t)

	ack, err = d.connect(ctx, sub, durable)
	mustDo(t, "subscriber reconnect", err)
	if ack.known && (ack.reason != 0 || !ack.sessionPresent) {
		t.Fatalf("CONNACK after the restart: reason %#x, session present %t; want 0, true", ack.reason, ack.sessionPresent)
	}
	want := slices.Concat(q1, q2)
	waitMessages(t, d, sub, len(want))
	mustDo(t, "publish live", d.publish(ctx, sub, topic, []string{"live"}, 1))
	want = append(want, "live")
	waitMessages(t, d, sub, len(want))
	mustDo(t, "subscriber disconnect", d.disconnect(ctx, sub))

	// DUP: none of these messages can have been sent before (they were
	// stored after the subscriber's connection ended, and dsd keeps that
	// connection's end: SessionRecord.ended_watermark_us), so none carries
	// DUP, as with mosquitto; an application that drops DUP messages loses
	// nothing.
	got := d.messages(sub)
	var gotPayloads []string
	dups := 0
	for _, m := range got {
		gotPayloads = append(gotPayloads, m.Payload)
		if m.Topic != topic || m.QoS != 1 || m.Retain {
			t.Errorf("message %+v: want topic %s, QoS 1, no RETAIN", m, topic)
		}
		if m.Dup {
			dups++
			t.Errorf("message %+v came with DUP, though it was never sent before", m)
		}
	}
	if !slices.Equal(gotPayloads, want) {
		t.Fatalf("the resumed subscriber received\n  %s\nwant, in this order and once each\n  %s", strings.Join(gotPayloads, " "), strings.Join(want, " "))
	}
	t.Logf("%s: %d messages in order, %d of them with DUP", b.name, len(got), dups)
}

// waitMessages waits until the slot holds at least n messages.
func waitMessages(t *testing.T, d driver, slot string, n int) {
	t.Helper()
	wait.For(t, 10*time.Second, fmt.Sprintf("%d messages on %s", n, slot), func() bool { return len(d.messages(slot)) >= n })
}

// requireTool skips the test when a client runtime is missing, saying what
// to install; under CI (CI set, as .ci/run runs) it fails instead, since
// .ci/run installs every runtime.
func requireTool(t *testing.T, missing string) {
	t.Helper()
	if missing == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (.ci/run should have installed it)", missing)
	}
	t.Skip(missing)
}
