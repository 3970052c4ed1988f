package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestWillSurvivesSigkill opens a session with a will (delay 3 s) on the
// real dsd, ends its connection abnormally, kills dsd with SIGKILL before
// the will is due, and restarts it: the will timer is durable, so the will
// is published, exactly once, also after a second SIGKILL and restart. The
// kill must be over well before the will is due (a deadline, not a skip),
// and the will must fire no earlier than its delay.
func TestWillSurvivesSigkill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(d.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ss := c.Sessions()
	const cid = "willer"
	const delay = 3 * time.Second
	will := &storagev1.Will{DelayIntervalS: uint32(delay / time.Second), Message: &storagev1.Message{Topic: "will/" + cid, Payload: []byte("gone"), Qos: 1}}
	o, err := ss.OpenSession(ctx, &dsdv1.OpenSessionRequest{ClientId: cid, Username: "u", ProtocolVersion: 5,
		ExpiryIntervalS: 3600, Will: will, GatewayId: "gw", GatewayEpoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	armed := time.Now() // the will is due no earlier than armed + delay
	if _, err := ss.Disconnect(ctx, &dsdv1.DisconnectRequest{ClientId: cid, Guard: o.GetGuard(), Abnormal: true}); err != nil {
		t.Fatal(err)
	}
	killed := make(chan struct{})
	go func() { d.Kill(); close(killed) }()
	select {
	case <-killed:
	case <-time.After(delay/2 - time.Since(armed)):
		t.Fatalf("SIGKILL of dsd took more than %v: the will (due after %v) may have fired before it", delay/2, delay)
	}

	for round := range 2 {
		d, err = d.KillAndRestart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var rec *storagev1.SessionRecord
		wait.For(t, 20*time.Second, fmt.Sprintf("round %d: the will to fire", round), func() bool {
			g, err := ss.GetSession(ctx, &dsdv1.GetSessionRequest{ClientId: cid})
			if err != nil {
				return false
			}
			rec = g.GetSession().GetRecord()
			return rec.GetWillFiredAtUs() != 0
		})
		if due := armed.Add(delay).UnixMicro(); rec.GetWillFiredAtUs() < due {
			t.Fatalf("round %d: the will fired at %d µs, before it was due (%d µs)", round, rec.GetWillFiredAtUs(), due)
		}
		if rec.GetWillAtUs() != 0 || rec.GetWill() != nil {
			t.Fatalf("round %d: record after the will fired: %v", round, rec)
		}
		// A marker stored afterwards in the same shard: once it is
		// readable, so is everything the shard stored before it.
		marker := &storagev1.Message{Topic: "will/marker", Payload: []byte{byte(round)}, Qos: 1}
		if _, err := c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: cid, Messages: []*storagev1.Message{marker}}); err != nil {
			t.Fatal(err)
		}
		var wills int
		wait.For(t, 20*time.Second, fmt.Sprintf("round %d: the marker to be readable", round), func() bool {
			msgs, err := c.ReadAll(ctx, "will/#", 0, 0)
			if err != nil {
				return false
			}
			wills = 0
			markers := 0
			for _, m := range msgs {
				switch m.GetMessage().GetTopic() {
				case "will/" + cid:
					wills++
				case "will/marker":
					markers++
				}
			}
			return markers == round+1
		})
		if wills != 1 {
			t.Fatalf("round %d: %d wills in the stream, want exactly 1", round, wills)
		}
		d.Kill()
	}
}
