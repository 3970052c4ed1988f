package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/internal/testutil/topicalias"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// countingConn counts the bytes read from the gateway.
type countingConn struct {
	net.Conn
	read atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// aliasSub is a paho.golang subscriber that announces a Topic Alias
// Maximum and resolves the gateway's aliases.
type aliasSub struct {
	c    *paho.Client
	conn *countingConn
	mu   sync.Mutex
	// got maps payload to the resolved topic; aliased counts PUBLISHes
	// that came with an alias alone; bad records the first error.
	got     map[string]string
	aliases *topicalias.Table
	aliased int
	bad     error
}

func dialAliasSub(t *testing.T, ctx context.Context, addr, id string, aliasMax uint16) *aliasSub {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &aliasSub{conn: &countingConn{Conn: nc}, got: map[string]string{}, aliases: topicalias.New(aliasMax)}
	s.c = paho.NewClient(paho.ClientConfig{
		Conn: s.conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			s.mu.Lock()
			defer s.mu.Unlock()
			var alias *uint16
			if p.Properties != nil {
				alias = p.Properties.TopicAlias
			}
			topic, aliasOnly, err := s.aliases.Resolve(p.Topic, alias)
			if err != nil && s.bad == nil {
				s.bad = err
			}
			if aliasOnly {
				s.aliased++
			}
			s.got[string(p.Payload)] = topic
			return true, nil
		}},
	})
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 60, Properties: &paho.ConnectProperties{}}
	if aliasMax > 0 {
		cp.Properties.TopicAliasMaximum = paho.Uint16(aliasMax)
	}
	if ack, err := s.c.Connect(ctx, cp); err != nil || ack.ReasonCode != 0 {
		t.Fatalf("connect %s: %+v, %v", id, ack, err)
	}
	sa, err := s.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "fleet/#", QoS: 0}}})
	if err != nil || sa.Reasons[0] != 0 {
		t.Fatalf("subscribe %s: %+v, %v", id, sa, err)
	}
	t.Cleanup(func() {
		_ = s.c.Disconnect(&paho.Disconnect{})
		<-s.c.Done()
	})
	return s
}

func (s *aliasSub) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// TestOutboundTopicAliases: a fleet of 500 devices with 68-byte topics
// sends 4 rounds, one message per device each; three paho.golang
// subscribers to fleet/# take them, with Topic Alias Maximum 0 (no
// aliases), 64 (fewer aliases than topics: round robin evicts each before
// it is used again) and 1024 (the gateway's maximum is raised to 1024 by
// mqtt.max_topic_alias_outbound). Every message must reach each one under
// its own topic (resolving the aliases), and the bytes each read are
// reported: the figures in docs/benchmarks.md, "Outbound topic aliases".
func TestOutboundTopicAliases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfgFile := filepath.Join(t.TempDir(), "strata.toml")
	if err := os.WriteFile(cfgFile, []byte("[mqtt]\nmax_topic_alias_outbound = 1024\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startClusterConfig(t, ctx, 1, cfgFile)
	const devices, rounds = 500, 4
	topic := func(d int) string {
		return fmt.Sprintf("fleet/region-eu-west-1/site-%04d/device-%06d/telemetry/temperature", d/50, d)
	}
	subs := map[uint16]*aliasSub{}
	start := map[uint16]int64{}
	for _, max := range []uint16{0, 64, 1024} {
		subs[max] = dialAliasSub(t, ctx, c.addr(0), fmt.Sprintf("alias-sub-%d", max), max)
		start[max] = subs[max].conn.read.Load()
	}

	nc, err := net.Dial("tcp", c.addr(0))
	if err != nil {
		t.Fatal(err)
	}
	pub := paho.NewClient(paho.ClientConfig{Conn: nc})
	if _, err := pub.Connect(ctx, &paho.Connect{ClientID: "alias-pub", CleanStart: true, KeepAlive: 60}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = pub.Disconnect(&paho.Disconnect{})
		<-pub.Done()
	}()
	for r := range rounds {
		for d := range devices {
			// 12-byte payloads, as a sensor reading.
			if _, err := pub.Publish(ctx, &paho.Publish{Topic: topic(d), QoS: 1, Payload: []byte(fmt.Sprintf("%06d/%05d", d, r))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	n := devices * rounds
	for max, s := range subs {
		wait.For(t, 60*time.Second, fmt.Sprintf("%d messages at alias maximum %d", n, max), func() bool { return s.count() >= n })
	}
	noAlias := subs[0].conn.read.Load() - start[0]
	for _, max := range []uint16{0, 64, 1024} {
		s := subs[max]
		s.mu.Lock()
		if s.bad != nil {
			t.Errorf("alias maximum %d: %v", max, s.bad)
		}
		for d := range devices {
			for r := range rounds {
				if got := s.got[fmt.Sprintf("%06d/%05d", d, r)]; got != topic(d) {
					t.Fatalf("alias maximum %d: device %d round %d came on %q", max, d, r, got)
				}
			}
		}
		read := s.conn.read.Load() - start[max]
		t.Logf("Topic Alias Maximum %4d: %d PUBLISHes, %d with the alias alone, %d bytes read (%.1f per message, %+.1f%% against no aliases)",
			max, n, s.aliased, read, float64(read)/float64(n), 100*float64(read-noAlias)/float64(noAlias))
		s.mu.Unlock()
	}
	if got := subs[1024].aliased; got != n-devices {
		t.Errorf("alias maximum 1024: %d PUBLISHes with the alias alone, want %d (all but each topic's first)", got, n-devices)
	}
	if got := subs[64].aliased; got != 0 {
		t.Errorf("alias maximum 64: %d PUBLISHes with the alias alone, want 0 (round robin over 500 topics evicts each alias first)", got)
	}
}
