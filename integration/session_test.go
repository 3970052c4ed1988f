package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// TestSessionsSurviveSigkill opens and commits sessions on the real dsd
// while others commit concurrently, kills dsd with SIGKILL, restarts it on
// the same data dir, and checks that every acked session state is intact:
// the same records and parts, the held QoS 2 id, guards still fencing (old
// refused, current accepted). Then it drives dstool sessions.
func TestSessionsSurviveSigkill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr := d.GRPCAddr
	c, err := client.Dial(grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ss := c.Sessions()

	// Sessions committed in parallel; each keeps its acked state.
	const n = 12
	acked := make([]*storagev1.Session, n)
	guards := make([]uint64, n)
	oldGuards := make([]uint64, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cid := fmt.Sprintf("dev-%02d", i)
			var guard uint64
			for round := range 3 {
				o, err := ss.OpenSession(ctx, &dsdv1.OpenSessionRequest{ClientId: cid, Username: "u", ProtocolVersion: 5,
					ExpiryIntervalS: 3600, GatewayId: "gw", GatewayEpoch: uint64(round + 1)})
				if err != nil {
					errs <- err
					return
				}
				oldGuards[i], guard = guard, o.GetGuard()
				filter := fmt.Sprintf("dev/%d/#", i)
				cm := &storagev1.SessionCommit{ClientId: cid, Guard: guard,
					PutStates:        []*storagev1.SubscriptionState{{Id: uint64(10 + round), SubscriptionId: 1, TopicFilter: filter, Qos: 1}},
					PutSubscriptions: []*storagev1.Subscription{{Id: 1, TopicFilter: filter, CurrentState: uint64(10 + round)}},
					Seqnos:           &storagev1.SeqnoTracks{NextQos1: uint64(round), CommittedQos1: uint64(round)},
				}
				if _, err := ss.CommitSession(ctx, &dsdv1.CommitSessionRequest{Commit: cm}); err != nil {
					errs <- err
					return
				}
			}
			q2 := &storagev1.Message{Topic: "dev/q2", Payload: []byte("x"), Qos: 2}
			if _, err := c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: cid, Messages: []*storagev1.Message{q2},
				Producer: &dsdv1.Producer{ClientId: cid, Epoch: guard, FirstSeq: 1, Qos2PacketIds: []uint32{42}}}); err != nil {
				errs <- err
				return
			}
			g, err := ss.GetSession(ctx, &dsdv1.GetSessionRequest{ClientId: cid})
			if err != nil {
				errs <- err
				return
			}
			acked[i], guards[i] = g.GetSession(), guard
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	d, err = d.KillAndRestart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(10 * time.Second)

	for i := range n {
		cid := fmt.Sprintf("dev-%02d", i)
		g, err := ss.GetSession(ctx, &dsdv1.GetSessionRequest{ClientId: cid})
		if err != nil {
			t.Fatalf("%s after SIGKILL: %v", cid, err)
		}
		if !proto.Equal(g.GetSession(), acked[i]) {
			t.Fatalf("%s after SIGKILL:\n%v\nwant\n%v", cid, g.GetSession(), acked[i])
		}
		_, err = ss.CommitSession(ctx, &dsdv1.CommitSessionRequest{Commit: &storagev1.SessionCommit{ClientId: cid, Guard: oldGuards[i]}})
		if status.Code(err) != codes.Aborted {
			t.Fatalf("%s: commit with an old guard after restart: %v", cid, err)
		}
		if _, err := ss.CommitSession(ctx, &dsdv1.CommitSessionRequest{Commit: &storagev1.SessionCommit{ClientId: cid, Guard: guards[i]}}); err != nil {
			t.Fatalf("%s: commit with the current guard after restart: %v", cid, err)
		}
	}
	// The held QoS 2 id survived: a resend is a duplicate.
	res, err := c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: "dev-00", Messages: []*storagev1.Message{{Topic: "dev/q2", Qos: 2}},
		Producer: &dsdv1.Producer{ClientId: "dev-00", Epoch: guards[0], FirstSeq: 2, Qos2PacketIds: []uint32{42}}})
	if err != nil || res.GetResult() != dsdv1.StoreResult_STORE_RESULT_DUPLICATE {
		t.Fatalf("resend of a held id after restart: %v %v", res, err)
	}
	// A new open after the restart gets a guard above every earlier one.
	o, err := ss.OpenSession(ctx, &dsdv1.OpenSessionRequest{ClientId: "dev-00", Username: "u", ExpiryIntervalS: 3600, GatewayId: "gw2", GatewayEpoch: 1})
	if err != nil || o.GetGuard() <= guards[0] || !o.GetSessionPresent() {
		t.Fatalf("open after restart: %v %v", o, err)
	}

	// dstool sessions.
	lines := strings.Split(strings.TrimSpace(dstool(t, grpcAddr, "sessions", "list", "--json")), "\n")
	if len(lines) != n {
		t.Fatalf("sessions list: %d lines, want %d", len(lines), n)
	}
	var row struct {
		ClientID      string `json:"client_id"`
		Subscriptions int    `json:"subscriptions"`
		Connected     bool   `json:"connected"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &row); err != nil || row.Subscriptions != 1 || !strings.HasPrefix(row.ClientID, "dev-") {
		t.Fatalf("sessions list line %q: %+v %v", lines[0], row, err)
	}
	show := dstool(t, grpcAddr, "sessions", "show", "dev-03")
	for _, want := range []string{"client id:        dev-03", "dev/3/#", "missed messages:  0", "held qos2 ids:    [42]"} {
		if !strings.Contains(show, want) {
			t.Fatalf("sessions show lacks %q:\n%s", want, show)
		}
	}
	if out := dstool(t, grpcAddr, "sessions", "show", "dev-03", "--json"); !strings.Contains(out, `"client_id":"dev-03"`) && !strings.Contains(out, `"client_id": "dev-03"`) {
		t.Fatalf("sessions show --json: %s", out)
	}
	if out := dstool(t, grpcAddr, "sessions", "delete", "dev-03"); !strings.Contains(out, `deleted session "dev-03"`) {
		t.Fatalf("sessions delete: %s", out)
	}
	if _, err := ss.GetSession(ctx, &dsdv1.GetSessionRequest{ClientId: "dev-03"}); status.Code(err) != codes.NotFound {
		t.Fatalf("after delete: %v", err)
	}
}
