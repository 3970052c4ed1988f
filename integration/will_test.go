package integration

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// TestWillSurvivesSigkill opens a session with a will (delay 1 s) on the
// real dsd, ends its connection abnormally, kills dsd with SIGKILL before
// the will is due, and restarts it: the will timer is durable, so the will
// is published, exactly once, also after a second SIGKILL and restart.
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
	will := &storagev1.Will{DelayIntervalS: 1, Message: &storagev1.Message{Topic: "will/" + cid, Payload: []byte("gone"), Qos: 1}}
	o, err := ss.OpenSession(ctx, &dsdv1.OpenSessionRequest{ClientId: cid, Username: "u", ProtocolVersion: 5,
		ExpiryIntervalS: 3600, Will: will, GatewayId: "gw", GatewayEpoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Disconnect(ctx, &dsdv1.DisconnectRequest{ClientId: cid, Guard: o.GetGuard(), Abnormal: true}); err != nil {
		t.Fatal(err)
	}
	armed := time.Now()
	d.Kill()
	if time.Since(armed) >= time.Second {
		t.Skip("dsd was killed after the will was due: the test proves nothing on this machine")
	}

	for round := range 2 {
		d, err = d.KillAndRestart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var rec *storagev1.SessionRecord
		waitFor(t, ctx, 20*time.Second, func() bool {
			g, err := ss.GetSession(ctx, &dsdv1.GetSessionRequest{ClientId: cid})
			if err != nil {
				return false
			}
			rec = g.GetSession().GetRecord()
			return rec.GetWillFiredAtUs() != 0
		}, "round %d: the will to fire", round)
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
		waitFor(t, ctx, 20*time.Second, func() bool {
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
		}, "round %d: the marker to be readable", round)
		if wills != 1 {
			t.Fatalf("round %d: %d wills in the stream, want exactly 1", round, wills)
		}
		d.Kill()
	}
}
