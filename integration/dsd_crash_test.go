package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/checker"
	"github.com/stratamq/strata/internal/testutil"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// crashConfig makes wildcard streams appear quickly (low thresholds) and keeps
// epochs short, so the test exercises varying-level streams and idle ticks
// (of the v1 layout; dsd/storage's crash tests cover the v2 default).
const crashConfig = `
durable_storage.messages.n_shards = 4
durable_storage.messages.layout.wildcard_thresholds = [4, 2]
durable_storage.messages.layout.type = "wildcard_optimized"
durable_storage.messages.layout.epoch_bits = 16
`

// TestDSDSigkillUnderStoreLoad kills dsd with SIGKILL while publishers store
// with producer state, restarts it on the same data directory, and checks
// with the history checker that every acknowledged message is stored exactly
// once and in order per (publisher, topic).
func TestDSDSigkillUnderStoreLoad(t *testing.T) {
	kills := 5
	if testutil.Torture() {
		kills = 20
	}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "strata.toml")
	if err := os.WriteFile(cfgFile, []byte(crashConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	d, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(dir, "data"), ConfigFile: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	// Restarts reuse the first ports (KillAndRestart), so clients keep one address.
	grpcAddr := d.GRPCAddr
	c, err := client.Dial(grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var hist checker.History
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var acked atomic.Int64
	loadErrs := make(chan error, 6)
	for p := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := publish(loadCtx, c, fmt.Sprintf("pub-%d", p), &hist, &acked); err != nil {
				loadErrs <- err
				stopLoad()
			}
		}()
	}

	rng := rand.New(rand.NewPCG(1, 2))
	for k := range kills {
		// Let load run until a few more messages are acked, then kill.
		target := acked.Load() + int64(100+rng.IntN(900))
		wait.For(t, 60*time.Second, fmt.Sprintf("acks before kill %d", k), func() bool { return acked.Load() >= target })
		d, err = d.KillAndRestart(ctx)
		if err != nil {
			stopLoad()
			wg.Wait()
			t.Fatalf("restart %d: %v", k, err)
		}
	}
	target := acked.Load() + 100
	wait.For(t, 60*time.Second, "acks after the last restart", func() bool { return acked.Load() >= target })
	stopLoad()
	wg.Wait()
	close(loadErrs)
	for err := range loadErrs {
		t.Fatal(err)
	}

	// Wait until every shard's readable clock has passed the epoch of the
	// last stored message, so varying-level streams are readable to the end.
	waitReadable(t, ctx, c)
	readWithDstool(t, grpcAddr, &hist)
	if err := d.Stop(20 * time.Second); err != nil {
		t.Errorf("graceful stop: %v\n%s", err, d.Log())
	}

	rep := checker.Check(hist.Events(), checker.Options{Readers: []string{"dstool"}})
	t.Logf("%d kills: %s", kills, rep)
	if rep.Acked < 500 {
		t.Errorf("only %d acks: the load did not run", rep.Acked)
	}
	if !rep.OK(checker.Options{}) {
		t.Errorf("history violates the guarantees:\n%s", rep)
	}
}

// publish stores batches of 1–4 messages with producer state until ctx ends,
// retrying a Store whose outcome is unknown with the same sequence numbers.
func publish(ctx context.Context, c *client.Client, id string, hist *checker.History, acked *atomic.Int64) error {
	rng := rand.New(rand.NewPCG(uint64(len(id)), uint64(id[len(id)-1])))
	seq := uint64(1)
	for ctx.Err() == nil {
		n := 1 + rng.IntN(4)
		req := &dsdv1.StoreRequest{ClientId: id, Producer: &dsdv1.Producer{ClientId: id, Epoch: 1, FirstSeq: seq}}
		topics := make([]string, n)
		for i := range n {
			topics[i] = fmt.Sprintf("fleet/%s/sensor%d", id, rng.IntN(5))
			s := seq + uint64(i)
			req.Messages = append(req.Messages, &storagev1.Message{Topic: topics[i], Qos: 1, PublisherClientId: id, Payload: fmt.Appendf(nil, "%s:%d", id, s)})
			hist.Add(checker.Event{Kind: checker.Invoke, Publisher: id, Topic: topics[i], Seq: s})
		}
		for {
			callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			res, err := c.Storage.Store(callCtx, req)
			cancel()
			if err == nil {
				if res.GetResult() != dsdv1.StoreResult_STORE_RESULT_STORED && res.GetResult() != dsdv1.StoreResult_STORE_RESULT_DUPLICATE {
					return fmt.Errorf("%s: unexpected store result %v", id, res.GetResult())
				}
				for i := range n {
					hist.Add(checker.Event{Kind: checker.Ack, Publisher: id, Topic: topics[i], Seq: seq + uint64(i)})
				}
				acked.Add(int64(n))
				break
			}
			if ctx.Err() != nil {
				return nil // outcome unknown
			}
			if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
				return fmt.Errorf("%s: store refused: %w", id, err)
			}
			// dsd is down or restarting: retry the same request (idempotent).
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(20 * time.Millisecond):
			}
		}
		seq += uint64(n)
	}
	return nil
}

func waitReadable(t *testing.T, ctx context.Context, c *client.Client) {
	t.Helper()
	marks, err := c.Storage.Watermarks(ctx, &dsdv1.WatermarksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	const epochBits = 16
	wait.For(t, 30*time.Second, "readable clocks past the last epoch", func() bool {
		info, err := c.Storage.Info(ctx, &dsdv1.InfoRequest{})
		if err != nil {
			return false
		}
		for i, s := range info.GetShards() {
			last := marks.GetWatermarks()[i].GetStartTimeUs() - 1
			if s.GetReadableClockUs()>>epochBits <= last>>epochBits {
				return false
			}
		}
		return true
	})
}

// readWithDstool reads everything back through the real dstool binary and
// records each message as a delivery to the reader "dstool".
func readWithDstool(t *testing.T, addr string, hist *checker.History) {
	t.Helper()
	cmd := exec.Command(bins.Path("dstool"), "read", "#", "--addr", addr, "--json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dstool read: %v\n%s", err, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m struct {
			Topic     string `json:"topic"`
			Payload   string `json:"payload"`
			Publisher string `json:"publisher"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("dstool read: bad line %q: %v", sc.Text(), err)
		}
		pub, seqText, ok := strings.Cut(m.Payload, ":")
		seq, err := strconv.ParseUint(seqText, 10, 64)
		if !ok || err != nil || pub != m.Publisher {
			t.Fatalf("dstool read: payload %q does not name its publisher %q", m.Payload, m.Publisher)
		}
		hist.Add(checker.Event{Kind: checker.Deliver, Reader: "dstool", Publisher: pub, Topic: m.Topic, Seq: seq})
	}
}
