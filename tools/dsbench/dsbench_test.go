package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stratamq/strata/dsd/server"
	"github.com/stratamq/strata/dsd/storage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startDSD runs dsd in-process (storage.DB + server) on free loopback ports.
func startDSD(t *testing.T, nShards int) *server.Server {
	t.Helper()
	db, err := storage.Open(storage.Options{DataDir: t.TempDir(), NShards: nShards})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.Listen(db, server.Options{GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	// cancel stops the server gracefully (Shutdown), within 5 s.
	cancel := func() {
		ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		_ = srv.Shutdown(ctx)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return srv
}

func testConfig(srv *server.Server, mode string) Config {
	cfg := defaultConfig()
	cfg.Addr, cfg.HTTPAddr = srv.GRPCAddr(), srv.HTTPAddr()
	cfg.Mode = mode
	cfg.Duration = 700 * time.Millisecond
	cfg.Concurrency = 8
	cfg.Batch = 2
	cfg.Devices = 50
	cfg.Progress = 250 * time.Millisecond
	return cfg
}

func sane(t *testing.T, name string, s *StoreReport) {
	t.Helper()
	if s == nil {
		t.Fatalf("%s: no report", name)
	}
	if s.Messages <= 0 || s.Stores <= 0 || s.Messages > s.Stores*2 || s.MsgsPerSec <= 0 {
		t.Errorf("%s: %+v", name, s)
	}
	if l := s.Latency; l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.Max {
		t.Errorf("%s: latency %+v", name, l)
	}
	if f := s.Engine.FsyncsPerMsg; s.Engine.Error != "" || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) || f > 2 {
		t.Errorf("%s: engine %+v", name, s.Engine)
	}
}

// TestStoreWithRaw runs the store phase against an in-process dsd, then
// the raw phase, and checks that the report is sane.
func TestStoreWithRaw(t *testing.T) {
	srv := startDSD(t, 4)
	cfg := testConfig(srv, modeStore)
	cfg.Raw = true
	cfg.Producer = true
	if err := cfg.finish(false); err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	rep, err := run(context.Background(), cfg, &progress)
	if err != nil {
		t.Fatal(err)
	}
	sane(t, "store", rep.Store)
	sane(t, "raw", rep.Raw)
	if rep.Store.Engine.MsgsPerBatch < 1 {
		t.Errorf("dsd msgs per batch %v", rep.Store.Engine.MsgsPerBatch)
	}
	if r := rep.Ratio; r == nil || r.Throughput <= 0 || r.LatencyP50 <= 0 {
		t.Errorf("ratio %+v", r)
	}
	if !strings.Contains(progress.String(), "[store dsd]") || !strings.Contains(progress.String(), "[store raw]") {
		t.Errorf("progress:\n%s", progress.String())
	}
	var text bytes.Buffer
	if err := rep.writeText(&text); err != nil || !strings.Contains(text.String(), "dsd/raw  throughput") {
		t.Errorf("text report (%v):\n%s", err, text.String())
	}
	t.Logf("\n%s", text.String())
}

// TestIngestAPI runs the store phase over the ingest stream: every Store
// is answered, dsd's engine committed the messages, and the report is
// sane; a read phase with it is refused.
func TestIngestAPI(t *testing.T) {
	srv := startDSD(t, 4)
	cfg := testConfig(srv, modeStore)
	cfg.API, cfg.Conns = apiIngest, 2
	if err := cfg.finish(false); err != nil {
		t.Fatal(err)
	}
	if !cfg.Producer {
		t.Fatal("--api ingest did not turn on producer state")
	}
	rep, err := run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	sane(t, "ingest", rep.Store)
	// dsd's counters saw the messages: committed in batches, each with its
	// payload in the WAL.
	if e := rep.Store.Engine; e.MsgsPerBatch < 1 || e.WALBytesPerMsg < float64(cfg.Payload) {
		t.Errorf("dsd's engine during the ingest phase: %+v", e)
	}
	bad := testConfig(srv, modeBoth)
	bad.API = apiIngest
	if err := bad.finish(false); err == nil {
		t.Error("--api ingest with --mode both was accepted")
	}
}

// TestBothReadsBackWhatItStored stores a fixed number of messages and
// reads them all back. A first run leaves data (and idle ticks) in shards
// that the second run does not write to: the read phase must not wait for
// those.
func TestBothReadsBackWhatItStored(t *testing.T) {
	srv := startDSD(t, 16)
	first := testConfig(srv, modeStore)
	first.ClientPrefix, first.Messages = "first-", 500
	if err := first.finish(true); err != nil {
		t.Fatal(err)
	}
	if _, err := run(context.Background(), first, io.Discard); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(srv, modeBoth)
	cfg.ClientPrefix, cfg.Concurrency = "second-", 1
	if storage.ShardOf("first-w0", 16) == storage.ShardOf("second-w0", 16) {
		t.Fatal("pick prefixes whose writers land in different shards")
	}
	cfg.Duration = 10 * time.Second
	cfg.Messages = 3001 // not a multiple of --batch
	if err := cfg.finish(true); err != nil {
		t.Fatal(err)
	}
	rep, err := run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Store.Messages != 3001 {
		t.Errorf("stored %d, want 3001", rep.Store.Messages)
	}
	rd := rep.Read
	if rd == nil || !rd.Complete || rd.Messages != 3001 || rd.Expected != 3001 || rd.NextCalls == 0 || rd.Streams == 0 {
		t.Fatalf("read %+v", rd)
	}
	if rd.WaitedSeconds > 5 {
		t.Errorf("waited %.1fs for readability", rd.WaitedSeconds)
	}
	var js bytes.Buffer
	if err := rep.writeJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back["read"] == nil {
		t.Errorf("JSON report (%v):\n%s", err, js.String())
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--mode", "write"},
		{"--mode", "read", "--raw"},
		{"--batch", "0"},
		{"--raw-dir", "/tmp/x"},
		{"--topic-prefix", "a/b"},
		{"extra"},
	} {
		var stderr bytes.Buffer
		if code := mainErr(args, io.Discard, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
