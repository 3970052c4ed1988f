package integration

import (
	"context"
	"fmt"
	"github.com/stratamq/strata/internal/testutil"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/dsd/client"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// TestGatewayPublishStored publishes 200 QoS 1 and 50 QoS 2 messages with
// paho (MQTT 5) on a few topics, concurrently so that the gateway batches
// them; every PUBACK and PUBCOMP arrives, dsd holds every message exactly
// once, in publish order per topic, and the retained one is retained.
func TestGatewayPublishStored(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	cl := startCluster(t, ctx, 1)
	d, g := cl.dsd, cl.gateways[0]

	nc, err := net.Dial("tcp", g.Addrs["tcp.default"])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	clientErr := make(chan error, 1)
	c := paho.NewClient(paho.ClientConfig{
		Conn:          nc,
		OnClientError: func(err error) { clientErr <- err },
		OnServerDisconnect: func(d *paho.Disconnect) {
			clientErr <- &serverDisconnect{d.ReasonCode}
		},
	})
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: "publisher", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatal(err)
	}
	if ca.ReasonCode != 0 || (ca.Properties.MaximumQoS != nil && *ca.Properties.MaximumQoS != 2) || !ca.Properties.RetainAvailable {
		t.Fatalf("CONNACK %+v, want QoS 2 and retain available", ca.Properties)
	}

	// One goroutine per topic: the order within a topic is the order of
	// its goroutine's publishes.
	type stream struct {
		topic  string
		qos    byte
		n      int
		retain bool
	}
	streams := []stream{ // 200 QoS 1 (one retained), 50 QoS 2
		{"pub/q1/a", 1, 70, false}, {"pub/q1/b", 1, 70, false}, {"pub/q1/c", 1, 59, false},
		{"pub/retained", 1, 1, true},
		{"pub/q2/a", 2, 25, false}, {"pub/q2/b", 2, 25, false},
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(streams))
	for _, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range s.n {
				p := &paho.Publish{Topic: s.topic, QoS: s.qos, Retain: s.retain, Payload: []byte(strconv.Itoa(i))}
				r, err := c.Publish(ctx, p)
				if err != nil {
					errs <- fmt.Errorf("%s #%d: %w", s.topic, i, err)
					return
				}
				if r.ReasonCode != 0 {
					errs <- fmt.Errorf("%s #%d: reason code 0x%02X", s.topic, i, r.ReasonCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	select {
	case err := <-clientErr:
		t.Fatalf("paho client error: %v", err)
	default:
	}
	if err := c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatal(err)
	}
	// Concurrent publishes share Stores.
	metrics := testutil.Metrics(t, g.Addrs["http"])
	if n := metricValue(metrics, "strata_gateway_messages_stored_total"); n != 250 {
		t.Errorf("strata_gateway_messages_stored_total = %v, want 250", n)
	}

	dc, err := client.Dial(d.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	want := 0
	for _, s := range streams {
		want += s.n
	}
	// Streams learned from a wildcard filter become readable when the epoch
	// completes (about a second): poll until every message is there.
	var got map[string][]string
	for {
		msgs, err := dc.ReadAll(ctx, "#", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		got = make(map[string][]string)
		for _, m := range msgs {
			got[m.GetMessage().GetTopic()] = append(got[m.GetMessage().GetTopic()], string(m.GetMessage().GetPayload()))
		}
		if len(msgs) >= want {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("dsd holds %d messages, want %d", len(msgs), want)
		case <-time.After(200 * time.Millisecond):
		}
	}
	for _, s := range streams {
		var exp []string
		for i := range s.n {
			exp = append(exp, strconv.Itoa(i))
		}
		if g, w := strings.Join(got[s.topic], ","), strings.Join(exp, ","); g != w {
			t.Errorf("%s in dsd: %s\nwant (exactly once, in order): %s", s.topic, g, w)
		}
	}
	if len(got) != len(streams) {
		t.Errorf("dsd holds %d topics, want %d: %v", len(got), len(streams), got)
	}

	var retained []*storagev1.Message
	if err := dc.MatchRetained(ctx, "pub/#", 0, func(m *storagev1.Message) error {
		retained = append(retained, m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(retained) != 1 || retained[0].GetTopic() != "pub/retained" || string(retained[0].GetPayload()) != "0" {
		t.Fatalf("retained: %v, want pub/retained = 0", retained)
	}
}
