package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/internal/testutil"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startServer runs a Server over a fresh DB on free loopback ports.
func startServer(t testing.TB) (*client.Client, *Server) {
	t.Helper()
	return startServerWith(t, nil)
}

// startServerWith is startServer with options changed by set (when set).
func startServerWith(t testing.TB, set func(*Options)) (*client.Client, *Server) {
	t.Helper()
	db, err := storage.Open(storage.Options{DataDir: t.TempDir(), NShards: 4})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", MaxRecvMsgSize: 1<<20 + 64<<10}
	if set != nil {
		set(&opts)
	}
	srv, _ := listenAndServe(t, db, opts)
	c, err := client.Dial(srv.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() }) // before the server stops
	return c, srv
}

// listenAndServe runs a Server with opts over db until the test ends or
// stop is called: then it shuts the server down gracefully (within 5 s),
// checks what Serve returned and, at the test's end, closes db.
func listenAndServe(t testing.TB, db *storage.DB, opts Options) (srv *Server, stop func()) {
	t.Helper()
	srv, err := Listen(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	stop = sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	t.Cleanup(func() {
		stop()
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return srv, stop
}

func msg(topic, payload string) *storagev1.Message {
	return &storagev1.Message{Topic: topic, Payload: []byte(payload), Qos: 1}
}

func TestStoreAndReadBack(t *testing.T) {
	c, _ := startServer(t)
	ctx := context.Background()
	res, err := c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: "car1", Messages: []*storagev1.Message{msg("fleet/car1/speed", "42"), msg("fleet/car1/fuel", "0.5")}})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetResult() != dsdv1.StoreResult_STORE_RESULT_STORED || len(res.GetTimestampsUs()) != 2 || res.GetTimestampsUs()[0] >= res.GetTimestampsUs()[1] {
		t.Fatalf("store: %v", res)
	}
	got, err := c.ReadAll(ctx, "fleet/car1/+", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].GetMessage().GetTopic() != "fleet/car1/speed" || string(got[1].GetMessage().GetPayload()) != "0.5" {
		t.Fatalf("read back %v", got)
	}
	if got[0].GetMessage().GetPublisherClientId() != "car1" {
		t.Errorf("publisher = %q, want car1", got[0].GetMessage().GetPublisherClientId())
	}
}

func TestProducerRetryIsDuplicate(t *testing.T) {
	c, _ := startServer(t)
	ctx := context.Background()
	req := &dsdv1.StoreRequest{ClientId: "p", Messages: []*storagev1.Message{msg("a", "1")}, Producer: &dsdv1.Producer{ClientId: "p", Epoch: 1, FirstSeq: 1}}
	if _, err := c.Storage.Store(ctx, req); err != nil {
		t.Fatal(err)
	}
	res, err := c.Storage.Store(ctx, req)
	if err != nil || res.GetResult() != dsdv1.StoreResult_STORE_RESULT_DUPLICATE {
		t.Fatalf("retry: %v, %v; want DUPLICATE", res, err)
	}
	req.Producer.FirstSeq = 5
	_, err = c.Storage.Store(ctx, req)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("gap: %v; want FailedPrecondition", err)
	}
	msgs, err := c.ReadAll(ctx, "a", 0, 0)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("stored %d copies (%v), want 1", len(msgs), err)
	}
}

func TestBadRequestsAreInvalidArgument(t *testing.T) {
	c, _ := startServer(t)
	ctx := context.Background()
	cases := map[string]func() error{
		"wildcard topic": func() error {
			_, err := c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: "x", Messages: []*storagev1.Message{msg("a/+", "")}})
			return err
		},
		"no messages": func() error {
			_, err := c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: "x"})
			return err
		},
		"qos 3": func() error {
			_, err := c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: "x", Messages: []*storagev1.Message{{Topic: "a", Qos: 3}}})
			return err
		},
		"bad filter": func() error {
			_, err := c.Storage.GetStreams(ctx, &dsdv1.GetStreamsRequest{TopicFilter: "a/#/b"})
			return err
		},
		"garbage iterator": func() error {
			_, err := c.Storage.Next(ctx, &dsdv1.NextRequest{Iterator: []byte("not an iterator")})
			return err
		},
		"shard out of range": func() error {
			shard := uint32(99)
			_, err := c.Storage.GetStreams(ctx, &dsdv1.GetStreamsRequest{TopicFilter: "#", Shard: &shard})
			return err
		},
		"huge max_messages": func() error {
			_, err := c.Storage.Next(ctx, &dsdv1.NextRequest{MaxMessages: 1 << 30})
			return err
		},
	}
	for name, call := range cases {
		if err := call(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v; want InvalidArgument", name, err)
		}
	}
}

func TestOversizedRequestIsRefused(t *testing.T) {
	c, _ := startServer(t)
	big := make([]byte, 2<<20)
	_, err := c.Storage.Store(context.Background(), &dsdv1.StoreRequest{ClientId: "x", Messages: []*storagev1.Message{{Topic: "a", Payload: big}}})
	if code := status.Code(err); code != codes.ResourceExhausted {
		t.Fatalf("2 MiB store: %v; want ResourceExhausted", err)
	}
}

func TestInfoAndWatermarks(t *testing.T) {
	c, _ := startServer(t)
	ctx := context.Background()
	res, err := c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: "car1", Messages: []*storagev1.Message{msg("t", "x")}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Storage.Info(ctx, &dsdv1.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(info.GetSite()) != 16 || info.GetNShards() != 4 || len(info.GetShards()) != 4 {
		t.Fatalf("info: %v", info)
	}
	for _, s := range info.GetShards() {
		if s.GetCurrentGeneration() == 0 || len(s.GetGenerations()) == 0 {
			t.Errorf("shard %d has no current generation: %v", s.GetShard(), s)
		}
	}
	marks, err := c.Storage.Watermarks(ctx, &dsdv1.WatermarksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := marks.GetWatermarks()[res.GetShard()].GetStartTimeUs(); got <= res.GetTimestampsUs()[0] {
		t.Errorf("watermark %d is not after the stored message's timestamp %d", got, res.GetTimestampsUs()[0])
	}
}

func TestHealthz(t *testing.T) {
	_, srv := startServer(t)
	resp, err := http.Get("http://" + srv.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
}

// TestListenPolicy: loopback is judged from the resolved address; any
// other address needs mutual TLS or unsafe_plaintext_listen.
func TestListenPolicy(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", ":7070", "192.0.2.1:7070"} {
		if _, _, err := listenPolicy(addr, false, false); err == nil || !strings.Contains(err.Error(), "unsafe_plaintext_listen") || !strings.Contains(err.Error(), "mutual TLS") {
			t.Errorf("%s: %v; want a refusal naming mutual TLS and unsafe_plaintext_listen", addr, err)
		}
		if _, loopback, err := listenPolicy(addr, false, true); err != nil || loopback {
			t.Errorf("%s with unsafe_plaintext_listen: %v (loopback %v)", addr, err, loopback)
		}
		if _, _, err := listenPolicy(addr, true, false); err != nil {
			t.Errorf("%s with mutual TLS: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:7070", "localhost:7070", "127.1.2.3:7070"} {
		bind, loopback, err := listenPolicy(addr, false, false)
		if err != nil || !loopback {
			t.Errorf("%s: %v (loopback %v)", addr, err, loopback)
		}
		if strings.HasPrefix(bind, "localhost") {
			t.Errorf("%s binds %s; want the resolved address", addr, bind)
		}
	}
}

func TestRESTAndMetrics(t *testing.T) {
	c, srv := startServer(t)
	if _, err := c.Storage.Store(context.Background(), &dsdv1.StoreRequest{ClientId: "car1", Messages: []*storagev1.Message{msg("fleet/car1/speed", "42")}}); err != nil {
		t.Fatal(err)
	}
	info, err := c.Storage.Info(context.Background(), &dsdv1.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.HTTPAddr()
	for _, prefix := range []string{"/ds", "/api/v5/ds"} {
		code, body := testutil.Get(t, base+prefix+"/sites")
		if code != 200 || !strings.Contains(body, info.GetSite()) {
			t.Errorf("%s/sites: %d %s", prefix, code, body)
		}
		code, body = testutil.Get(t, base+prefix+"/sites/"+info.GetSite())
		if code != 200 || strings.Count(body, `"storage":"messages"`) != 4 {
			t.Errorf("%s/sites/{site}: %d %s", prefix, code, body)
		}
		if code, _ = testutil.Get(t, base+prefix+"/sites/nope"); code != 404 {
			t.Errorf("%s/sites/nope: %d, want 404", prefix, code)
		}
		code, body = testutil.Get(t, base+prefix+"/storages")
		if code != 200 || strings.TrimSpace(body) != `["messages"]` {
			t.Errorf("%s/storages: %d %s", prefix, code, body)
		}
		code, body = testutil.Get(t, base+prefix+"/storages/messages")
		if code != 200 || strings.Count(body, `"replicas"`) != 4 {
			t.Errorf("%s/storages/messages: %d %s", prefix, code, body)
		}
	}
	if code, body := testutil.Get(t, base+"/readyz"); code != 200 {
		t.Errorf("readyz: %d %s", code, body)
	}
	code, body := testutil.Get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		`strata_ds_egress_messages_total{shard="`,
		"strata_ds_egress_batches_total",
		"strata_ds_egress_bytes_total",
		"strata_ds_egress_batches_failed_total",
		"strata_ds_store_batch_seconds_bucket",
		"strata_ds_lts_seek_total",
		"strata_ds_lts_next_total",
		"strata_ds_lts_collision_total",
		"strata_ds_readable_clock_seconds",
		`strata_ds_egress_flush_seconds_bucket{shard="`,
		"strata_ds_commit_rounds_total",
		"strata_ds_commit_commands_total",
		"strata_ds_commit_messages_total",
		"strata_ds_commit_round_seconds_bucket",
		"strata_ds_ingest_pending_stores",
		"strata_ds_next_seconds_bucket",
		"strata_ds_wal_fsyncs_total",
		"strata_ds_wal_bytes_written_total",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The one stored message is counted in exactly one shard.
	if !strings.Contains(body, "strata_ds_egress_messages_total{shard=") || strings.Count(body, "strata_ds_egress_messages_total{") != 4 {
		t.Errorf("egress messages not per shard:\n%s", body)
	}
}
