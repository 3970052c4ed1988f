package integration

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// TestRetainedAcrossSites: three dsd with replication factor 3, the
// leadership spread over more than one site, one gateway given all three.
// Publishers of different shards set and clear retained messages; a new
// subscriber receives exactly the latest retained message of each topic
// (merged from every shard's leader). Then the site leading the most
// shards is SIGKILLed: after the failover, a new subscriber receives the
// same retained messages from the new leaders' replicas, and dstool given
// one surviving site lists them and deletes one; dstool shows a durable
// session through either surviving site (from its shard's leader).
func TestRetainedAcrossSites(t *testing.T) {
	const nShards = 4
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sites, _ := startSpreadSites(t, ctx, nShards)
	gw, err := StartGateway(ctx, bins, GatewayConfig{DSDAddr: grpcAddrList(sites)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", tail(gw.Log(), 60))
		}
		_ = gw.Stop(10 * time.Second)
	})
	addr := gw.Addrs["tcp.default"]

	// 12 publishers over 6 topics, in turn: topic k ends with the payload
	// of publisher k+6; topic 5 is then cleared by publisher 0.
	publish := func(id, topic, payload string) {
		t.Helper()
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: nc})
		if ack, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil || ack.ReasonCode != 0 {
			t.Fatalf("connect %s: %v %v", id, ack, err)
		}
		defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
		if r, err := c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1, Retain: true}); err != nil || r.ReasonCode >= 0x80 {
			t.Fatalf("publish %s: %v %v", id, r, err)
		}
	}
	want := map[string]string{}
	for i := range 12 {
		id, topic := fmt.Sprintf("rs-pub-%d", i), fmt.Sprintf("rs/t%d", i%6)
		publish(id, topic, id)
		want[topic] = id
	}
	publish("rs-pub-0", "rs/t5", "")
	delete(want, "rs/t5")

	check := func(what, clientID string) {
		t.Helper()
		s := dialSub(t, ctx, addr, pahoOpts{clientID: clientID, cleanStart: true})
		defer s.disconnect()
		s.subscribe(t, ctx, "rs/#", 1)
		s.waitCount(t, len(want), 20*time.Second)
		got := map[string]string{}
		for _, d := range s.messages() {
			if !d.retain {
				t.Fatalf("%s: %s arrived without RETAIN", what, d.topic)
			}
			if _, dup := got[d.topic]; dup {
				t.Fatalf("%s: %s arrived twice", what, d.topic)
			}
			got[d.topic] = d.payload
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: retained %v, want %v (leaders %v)", what, got, want, shardLeaders(sites, nShards))
		}
	}
	check("before the kill", "rs-sub-1")

	victim, count := mostLeading(shardLeaders(sites, nShards), len(sites))
	sites[victim].Kill()
	t.Logf("SIGKILL of site %d, leader of %d of %d shards", victim, count, nShards)
	waitLed(t, sites, nShards, victim, 20*time.Second)
	check("after the failover", "rs-sub-2")

	// dstool, given one surviving site, lists and deletes across the
	// cluster.
	live := sites[(victim+1)%3].GRPCAddr
	listed := func() []string {
		out := strings.TrimSpace(dstool(t, live, "retained", "list", "rs/#"))
		if out == "" {
			return nil
		}
		return strings.Split(out, "\n")
	}
	if got := listed(); len(got) != len(want) {
		t.Fatalf("dstool retained list: %q, want %d lines", got, len(want))
	}
	if out := dstool(t, live, "retained", "delete", "rs/t0"); !strings.Contains(out, "deleted") {
		t.Fatalf("dstool retained delete: %q", out)
	}
	delete(want, "rs/t0")
	if got := listed(); len(got) != len(want) {
		t.Fatalf("dstool retained list after the delete: %q, want %d lines", got, len(want))
	}
	check("after dstool's delete", "rs-sub-3")

	// dstool's session inspection goes to each shard's leader too: a
	// durable session that left shows on any site given.
	d := dialSub(t, ctx, addr, pahoOpts{clientID: "rs-durable", cleanStart: true, expiry: 600})
	d.subscribe(t, ctx, "rs/#", 1)
	d.disconnect()
	for i, site := range sites {
		if i == victim {
			continue
		}
		if out := dstool(t, site.GRPCAddr, "sessions", "show", "rs-durable"); !strings.Contains(out, "rs/#") {
			t.Fatalf("dstool sessions show via site %d:\n%s", i, out)
		}
		if out := dstool(t, site.GRPCAddr, "sessions", "list"); !strings.Contains(out, "rs-durable") {
			t.Fatalf("dstool sessions list via site %d:\n%s", i, out)
		}
	}
}
