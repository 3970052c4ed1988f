package childproc

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWatcherFindsReadyLines(t *testing.T) {
	var log bytes.Buffer
	w := &watcher{w: &log, re: DSDReady, found: make(chan string, 1)}
	line := `time=2026-11-22T07:20:05.012Z level=INFO msg="dsd ready" site=f84608ba3dfd931b shards=16 grpc=127.0.0.1:37249 http=127.0.0.1:42413 data_dir=/tmp/d` + "\n"
	for _, part := range []string{"# config\nlevel=INFO msg=\"storage opened\"\n", line[:30], line[30:], "more\n"} {
		if _, err := w.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case got := <-w.found:
		grpc, err1 := Attr(GRPCAttr, got)
		http, err2 := Attr(HTTPAttr, got)
		if grpc != "127.0.0.1:37249" || http != "127.0.0.1:42413" || err1 != nil || err2 != nil {
			t.Errorf("dsd addresses %q %q (%v %v) in %q", grpc, http, err1, err2, got)
		}
	default:
		t.Fatal("ready line not found")
	}
	if !strings.HasSuffix(log.String(), "more\n") {
		t.Error("output not copied")
	}
	gw := `time=x level=INFO msg="gateway ready" dsd=127.0.0.1:37249 gateway_id=gw-1 epoch=1 http=127.0.0.1:37513 tcp.default=127.0.0.1:41759`
	if !GatewayReady.MatchString(gw) {
		t.Error("gateway ready line not recognised")
	}
	if a, err := Attr(TCPAttr, gw); a != "127.0.0.1:41759" || err != nil {
		t.Errorf("gateway MQTT address %q, %v", a, err)
	}
	if _, err := Attr(TCPAttr, `msg="gateway ready" http=x`); err == nil || !strings.Contains(err.Error(), "tcp") {
		t.Errorf("missing attribute: %v", err)
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil || reservedPorts[p] || p == 0 {
		t.Errorf("free port %d, %v", p, err)
	}
}

// A child that prints its ready line is started, answers Alive, and stops on
// SIGTERM; one that never gets ready is killed after the timeout, and the
// error carries its log.
func TestStartAndStop(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	p, line, err := Start(ctx, "ready", filepath.Join(dir, "ready.log"), DSDReady, 10*time.Second,
		"/bin/sh", "-c", `echo 'level=INFO msg="dsd ready" grpc=127.0.0.1:9' >&2; exec sleep 60`)
	if err != nil || !strings.Contains(line, "grpc=127.0.0.1:9") {
		t.Fatalf("start: %q, %v", line, err)
	}
	if err := p.Alive(); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if p.Alive() == nil {
		t.Fatal("alive after Stop")
	}
	q, _, err := Start(ctx, "silent", filepath.Join(dir, "silent.log"), DSDReady, 200*time.Millisecond,
		"/bin/sh", "-c", `echo starting >&2; exec sleep 60`)
	if err == nil || !strings.Contains(err.Error(), "starting") {
		t.Fatalf("a child that is never ready: %v", err)
	}
	select {
	case <-q.Exited():
	default:
		t.Fatal("a child that was never ready still runs")
	}
}
