package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// TestRetainedSurvivesSigkill stores retained messages (and deletions) from
// three publishers with producer state, kills dsd with SIGKILL twice under
// that load, and checks with `dstool retained list --json` that every topic
// ends at the last acknowledged value of its publisher. A Store whose
// outcome was unknown is retried with the same sequence numbers until it is
// acknowledged, so the retry after a restart (a duplicate) must still apply
// its retained update.
func TestRetainedSurvivesSigkill(t *testing.T) {
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

	var (
		mu     sync.Mutex
		latest = map[string]string{} // topic -> last acked payload ("" deleted)
		acked  atomic.Int64
		wg     sync.WaitGroup
	)
	loadCtx, stopLoad := context.WithCancel(ctx)
	errs := make(chan error, 3)
	for p := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("ret-pub-%d", p)
			for seq := uint64(1); loadCtx.Err() == nil; seq++ {
				topic := fmt.Sprintf("ret/%s/t%d", id, seq%4)
				payload := fmt.Sprintf("%s:%d", id, seq)
				if seq%9 == 0 {
					payload = "" // clears the topic's retained message
				}
				req := &dsdv1.StoreRequest{ClientId: id, Producer: &dsdv1.Producer{ClientId: id, Epoch: 1, FirstSeq: seq},
					Messages: []*storagev1.Message{{Topic: topic, Payload: []byte(payload), Qos: 1, Retain: true}}}
				for {
					// Retry until acked, even after loadCtx ends: the test's
					// expectation needs every Store's outcome.
					callCtx, cancelCall := context.WithTimeout(ctx, 5*time.Second)
					_, err := c.Storage.Store(callCtx, req)
					cancelCall()
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						errs <- fmt.Errorf("%s seq %d: %w", id, seq, err)
						return
					}
					time.Sleep(20 * time.Millisecond) // models: a publisher's retry pacing while dsd restarts
				}
				mu.Lock()
				latest[topic] = payload
				mu.Unlock()
				acked.Add(1)
			}
		}()
	}
	for k := range 2 {
		target := acked.Load() + 150
		wait.For(t, 60*time.Second, fmt.Sprintf("acks before kill %d", k), func() bool { return acked.Load() >= target })
		if d, err = d.KillAndRestart(ctx); err != nil {
			stopLoad()
			wg.Wait()
			t.Fatalf("restart %d: %v", k, err)
		}
	}
	target := acked.Load() + 50
	wait.For(t, 60*time.Second, "acks after the last restart", func() bool { return acked.Load() >= target })
	stopLoad()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// One more SIGKILL with the load stopped: everything acked is durable.
	if d, err = d.KillAndRestart(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Stop(10 * time.Second)

	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(dstool(t, grpcAddr, "retained", "list", "ret/#", "--json")), "\n") {
		if line == "" {
			continue
		}
		var m struct {
			Topic     string `json:"topic"`
			Payload   string `json:"payload"`
			Publisher string `json:"publisher"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if !strings.HasPrefix(m.Topic, "ret/"+m.Publisher+"/") {
			t.Errorf("topic %s has publisher %q", m.Topic, m.Publisher)
		}
		got[m.Topic] = m.Payload
	}
	for topic, payload := range latest {
		if got[topic] != payload {
			t.Errorf("%s: retained %q, last acked %q", topic, got[topic], payload)
		}
		delete(got, topic)
	}
	for topic, payload := range got {
		t.Errorf("%s: retained %q was never acked", topic, payload)
	}
	t.Logf("%d acked retained stores, %d topics", acked.Load(), len(latest))

	// The default filter is #; --limit bounds the listing; delete clears.
	if n := strings.Count(dstool(t, grpcAddr, "retained", "list", "--limit", "2"), "\n"); n != 2 {
		t.Errorf("list --limit 2 printed %d lines", n)
	}
	for topic, payload := range latest {
		if payload == "" {
			continue
		}
		if out := dstool(t, grpcAddr, "retained", "delete", topic); !strings.Contains(out, "deleted") {
			t.Errorf("delete %s: %s", topic, out)
		}
		if out := dstool(t, grpcAddr, "retained", "list", topic); out != "" {
			t.Errorf("list %s after delete: %q", topic, out)
		}
		break
	}
}
