package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/dsd/storage"
)

// listenOnly opens a DB and a Server on free loopback ports, not serving.
func listenOnly(t *testing.T) (*Server, *storage.DB) {
	t.Helper()
	db, err := storage.Open(storage.Options{DataDir: t.TempDir(), NShards: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	srv, err := Listen(db, Options{GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	return srv, db
}

// TestShutdownEndsLinksAndServe: Shutdown ends an open GatewayLink (which
// never ends by itself), and Serve then returns nil; a second Shutdown and
// a Close after it return nil at once.
func TestShutdownEndsLinksAndServe(t *testing.T) {
	srv, _ := listenOnly(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	c, err := client.Dial(srv.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.OpenLink(context.Background(), "gw-life", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an open link: %v", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve after Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("Close after Shutdown: %v", err)
	}
}

// TestCloseStopsServe: Close stops a serving server at once, and Serve
// returns nil.
func TestCloseStopsServe(t *testing.T) {
	srv, _ := listenOnly(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
}

// TestListenRefusesOversizedLinkBatches: a batch size above the cap is an
// error at start-up, not silently lowered.
func TestListenRefusesOversizedLinkBatches(t *testing.T) {
	db, err := storage.Open(storage.Options{DataDir: t.TempDir(), NShards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = Listen(db, Options{GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", GatewayLink: GatewayLinkOptions{BatchSize: linkMaxBatchMessagesCap + 1}})
	if err == nil || !strings.Contains(err.Error(), "durable_sessions.batch_size") {
		t.Fatalf("Listen with BatchSize %d: %v, want an error naming durable_sessions.batch_size", linkMaxBatchMessagesCap+1, err)
	}
}
