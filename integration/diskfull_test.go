package integration

import (
	"context"
	"crypto/rand"
	"fmt"
	"github.com/stratamq/strata/internal/testutil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// diskFullConfig: a watermark that a 24 MiB tmpfs reaches quickly, read
// often, and no emergency ballast (the test frees space itself).
const diskFullConfig = `
durable_storage.messages.n_shards = 2
durable_storage.messages.min_free_bytes = "6MiB"
durable_storage.messages.disk_check_interval = "50ms"
durable_storage.messages.emergency_ballast_bytes = 0
`

// mountTmpfs mounts a tmpfs of size at a new directory and unmounts it in
// Cleanup; it skips the test when that is not possible (not root, no
// mount).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("skipped: cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// TestDSDDiskFullTmpfs runs dsd on a 24 MiB tmpfs under Store load (each
// publisher stores one QoS 1 message at a time, as a gateway does for a
// connection) until the free-space watermark makes it read-only, and
// checks: refused Stores answer RESOURCE_EXHAUSTED "dsd: disk full",
// reads go on, /metrics says strata_dsd_read_only{reason="disk_watermark"}
// 1, SIGTERM stops dsd within a few seconds, every acknowledged Store is
// readable after the restart, and once space is freed (a ballast file the
// test wrote first) writes resume without a restart.
func TestDSDDiskFullTmpfs(t *testing.T) {
	mnt := mountTmpfs(t, "24m")
	ballast := filepath.Join(mnt, "test-ballast")
	if err := os.WriteFile(ballast, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "strata.toml")
	if err := os.WriteFile(cfgFile, []byte(diskFullConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(mnt, "data"), ConfigFile: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Kill) // before the unmount (cleanups run last first)
	c, err := client.Dial(d.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Load: 4 publishers, one Store of one 4 KiB random message at a time,
	// until each is refused.
	var (
		mu      sync.Mutex
		acked   = map[string]bool{} // payload prefix "pub/seq"
		refusal error
	)
	store := func(pub string, seq int) error {
		payload := make([]byte, 4<<10)
		_, _ = rand.Read(payload)
		key := fmt.Sprintf("%s/%d", pub, seq)
		copy(payload, key+"|")
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := c.Storage.Store(callCtx, &dsdv1.StoreRequest{ClientId: pub,
			Messages: []*storagev1.Message{{Topic: "df/" + pub, Payload: payload, Qos: 1}}})
		if err == nil {
			mu.Lock()
			acked[key] = true
			mu.Unlock()
		}
		return err
	}
	var wg sync.WaitGroup
	deadline := time.Now().Add(90 * time.Second)
	for p := range 4 {
		pub := fmt.Sprintf("pub%d", p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; time.Now().Before(deadline); seq++ {
				if err := store(pub, seq); err != nil {
					mu.Lock()
					if refusal == nil {
						refusal = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if refusal == nil {
		t.Fatalf("no Store refused within the load's time; %d acked", len(acked))
	}
	if status.Code(refusal) != codes.ResourceExhausted || !strings.Contains(refusal.Error(), "dsd: disk full") {
		t.Fatalf("refusal: %v, want RESOURCE_EXHAUSTED dsd: disk full", refusal)
	}
	t.Logf("%d Stores acked, then: %v", len(acked), refusal)
	if err := store("late", 0); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("store while read-only: %v", err)
	}
	// Reads go on while read-only.
	if got, err := c.ReadAll(ctx, "df/#", 0, 0); err != nil || len(got) == 0 {
		t.Fatalf("read while read-only: %d messages, %v", len(got), err)
	}
	if m := testutil.Metrics(t, d.HTTPAddr); !strings.Contains(m, `strata_dsd_read_only{reason="disk_watermark"} 1`) ||
		!strings.Contains(m, "strata_dsd_disk_free_bytes ") || !strings.Contains(m, `strata_dsd_writes_refused_total{reason="disk_watermark"}`) {
		t.Fatalf("metrics while read-only:\n%s", testutil.Lines(m, "strata_dsd_"))
	}

	// SIGTERM while the disk is full: a prompt, clean stop.
	start := time.Now()
	if err := d.Stop(10 * time.Second); err != nil {
		t.Fatalf("stop while the disk is full: %v\n%s", err, d.Log())
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("SIGTERM took %v", took)
	}

	// Restart on the full disk: every acknowledged Store is there.
	d, err = StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(mnt, "data"), ConfigFile: cfgFile,
		GRPCListen: d.GRPCAddr, HTTPListen: d.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Kill)
	got, err := c.ReadAll(ctx, "df/#", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, m := range got {
		key, _, _ := strings.Cut(string(m.GetMessage().GetPayload()), "|")
		found[key] = true
	}
	for key := range acked {
		if !found[key] {
			t.Errorf("acknowledged Store %s lost", key)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// Opening may free space (Pebble flushes the WAL and deletes it), so
	// the restarted dsd is read-only exactly when its own reading is under
	// the watermark: then writes are refused, else accepted.
	if strings.Contains(testutil.Metrics(t, d.HTTPAddr), `strata_dsd_read_only{reason="disk_watermark"} 1`) {
		if code := status.Code(store("late", 1)); code != codes.ResourceExhausted {
			t.Fatalf("restarted read-only (under the watermark), a Store answered %v; want ResourceExhausted", code)
		}
	} else {
		t.Logf("opening freed space above the watermark: %s", testutil.Lines(testutil.Metrics(t, d.HTTPAddr), "strata_dsd_disk_free_bytes"))
		if err := store("late", 1); err != nil {
			t.Fatalf("restarted above the watermark, a Store failed: %v", err)
		}
	}

	// Free space: writes resume without a restart.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	seq := 2
	wait.For(t, 10*time.Second, "writes to resume after space was freed", func() bool {
		seq++
		return store("late", seq) == nil
	})
	if m := testutil.Metrics(t, d.HTTPAddr); !strings.Contains(m, `strata_dsd_read_only{reason="disk_watermark"} 0`) {
		t.Fatalf("metrics after space returned:\n%s", testutil.Lines(m, "strata_dsd_"))
	}
	if err := d.Stop(10 * time.Second); err != nil {
		t.Fatalf("stop: %v\n%s", err, d.Log())
	}
}
