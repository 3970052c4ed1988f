package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil/wait"
)

func dstool(t *testing.T, addr string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bins.Path("dstool"), append(args, "--addr", addr)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dstool %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// TestDstoolOnFreshDSD drives the real dstool against a fresh dsd with the
// default configuration: info, read, streams and the generation commands.
func TestDstoolOnFreshDSD(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(10 * time.Second)

	var info struct {
		Site   string `json:"site"`
		Shards []struct {
			Shard             int    `json:"shard"`
			CurrentGeneration uint64 `json:"current_generation"`
		} `json:"shards"`
		Generations []struct {
			Shard   int    `json:"shard"`
			ID      uint64 `json:"id"`
			Current bool   `json:"current"`
		} `json:"generations"`
	}
	if err := json.Unmarshal([]byte(dstool(t, d.GRPCAddr, "info", "--json")), &info); err != nil {
		t.Fatal(err)
	}
	if len(info.Site) != 16 || len(info.Shards) != 16 || len(info.Generations) != 16 {
		t.Fatalf("fresh dsd: site %q, %d shards, %d generations; want a 16-hex site, 16 shards, 16 generations", info.Site, len(info.Shards), len(info.Generations))
	}

	c, err := client.Dial(d.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: "car1", Messages: []*storagev1.Message{
		{Topic: "fleet/car1/speed", Payload: []byte("42"), Qos: 1},
		{Topic: "fleet/car1/fuel", Payload: []byte{0xff, 0x00}, Qos: 0},
	}})
	if err != nil {
		t.Fatal(err)
	}
	shard := res.GetShard()

	lines := strings.Split(strings.TrimSpace(dstool(t, d.GRPCAddr, "read", "fleet/#", "--limit", "10", "--json")), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"payload":"42"`) || !strings.Contains(lines[1], `"payload_base64":"/wA="`) {
		t.Fatalf("read --json:\n%s", strings.Join(lines, "\n"))
	}
	if out := dstool(t, d.GRPCAddr, "read", "fleet/car1/speed"); !strings.Contains(out, `fleet/car1/speed "42"`) {
		t.Errorf("read (text): %q", out)
	}
	if out := dstool(t, d.GRPCAddr, "streams", "fleet/#", "--json"); strings.Count(out, "\n") != 2 {
		t.Errorf("streams: %q, want two streams", out)
	}

	// A new generation; then the old one of the publisher's shard can be dropped and its messages are gone.
	dstool(t, d.GRPCAddr, "generations", "add")
	list := dstool(t, d.GRPCAddr, "generations", "list", "--json", "--shard", strconv.Itoa(int(shard)))
	if strings.Count(list, "\n") != 2 || strings.Count(list, `"current":true`) != 1 {
		t.Fatalf("generations after add:\n%s", list)
	}
	var first struct {
		ID uint64 `json:"id"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(list, "\n", 2)[0]), &first); err != nil {
		t.Fatal(err)
	}
	dstool(t, d.GRPCAddr, "generations", "drop", strconv.Itoa(int(shard)), strconv.Itoa(int(first.ID)))
	if out := dstool(t, d.GRPCAddr, "read", "#"); out != "" {
		t.Errorf("messages still readable after their generation was dropped:\n%s", out)
	}

	for path, want := range map[string]string{
		"/healthz":               "ok",
		"/readyz":                "ready",
		"/ds/sites":              info.Site,
		"/api/v5/ds/storages":    "messages",
		"/ds/storages/messages":  `"replicas"`,
		"/metrics":               "strata_ds_egress_messages_total",
		"/ds/sites/" + info.Site: `"up":true`,
	} {
		resp, err := http.Get("http://" + d.HTTPAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
}

// TestDstoolLTS: after more distinct values at a level than the threshold
// (20 below the first level), dstool lts shows the learned + level.
func TestDstoolLTS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(10 * time.Second)
	c, err := client.Dial(d.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := &dsdv1.StoreRequest{ClientId: "gateway-7"}
	for i := range 30 {
		req.Messages = append(req.Messages, &storagev1.Message{Topic: "fleet/car" + strconv.Itoa(i) + "/speed", Payload: []byte("1")})
	}
	res, err := c.Storage.Store(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var ls struct {
		Streams []struct {
			Structure string `json:"structure"`
			Messages  uint64 `json:"messages"`
		} `json:"streams"`
	}
	if err := json.Unmarshal([]byte(dstool(t, d.GRPCAddr, "lts", strconv.Itoa(int(res.GetShard())), "--json")), &ls); err != nil {
		t.Fatal(err)
	}
	var concrete, wildcard uint64
	for _, st := range ls.Streams {
		switch {
		case st.Structure == "fleet/+/speed":
			wildcard += st.Messages
		case strings.HasPrefix(st.Structure, "fleet/car"):
			concrete += st.Messages
		default:
			t.Errorf("unexpected stream %q", st.Structure)
		}
	}
	// The first 20 values keep their own streams; the rest share fleet/+/speed.
	if concrete != 20 || wildcard != 10 {
		t.Errorf("lts: %d messages in concrete streams, %d in fleet/+/speed; want 20 and 10\n%+v", concrete, wildcard, ls)
	}
	if out := dstool(t, d.GRPCAddr, "lts", strconv.Itoa(int(res.GetShard()))); !strings.Contains(out, "fleet/+/speed") {
		t.Errorf("lts (text) lacks the learned wildcard:\n%s", out)
	}
}

// TestDSDRefusesPublicPlaintext: dsd will not listen on a non-loopback
// address without TLS unless unsafe_plaintext_listen is set.
func TestDSDRefusesPublicPlaintext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(t.TempDir(), "data"), GRPCListen: "0.0.0.0:0"})
	if err == nil || !strings.Contains(err.Error(), "unsafe_plaintext_listen") {
		t.Fatalf("dsd on 0.0.0.0 without TLS: %v; want a refusal naming unsafe_plaintext_listen", err)
	}
}

// TestDstoolOnV1DataDir starts dsd on a copy of the committed v1 data dir
// (dsd/storage/testdata/compat/v1, written before wildcard_optimized_v2):
// dstool lists its generations as wildcard_optimized and reads them, a
// generation added now is wildcard_optimized_v2, messages of both are read,
// and the v1 generation is dropped.
func TestDstoolOnV1DataDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "dsd", "storage", "testdata", "compat", "v1"))); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "strata.toml")
	// Retention off: the fixture's generations were created in 2023, and
	// retention would rotate them at once.
	if err := os.WriteFile(conf, []byte("durable_storage.messages.n_shards = 2\ndurable_sessions.message_retention_period = \"0s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := StartDSD(ctx, bins, DSDConfig{DataDir: dir, ConfigFile: conf})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(10 * time.Second)

	type gen struct {
		Shard   int    `json:"shard"`
		ID      uint64 `json:"id"`
		Current bool   `json:"current"`
		Layout  string `json:"layout"`
	}
	gens := func() []gen {
		var out []gen
		for _, line := range strings.Split(strings.TrimSpace(dstool(t, d.GRPCAddr, "generations", "list", "--json")), "\n") {
			var g gen
			if err := json.Unmarshal([]byte(line), &g); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			out = append(out, g)
		}
		return out
	}
	for _, g := range gens() {
		if g.Layout != "wildcard_optimized" || g.ID != 1 {
			t.Fatalf("v1 data dir: generation %+v, want only generation 1, wildcard_optimized", g)
		}
	}
	if out := dstool(t, d.GRPCAddr, "generations", "list"); !strings.Contains(out, "wildcard_optimized bits_per_topic_level=64 epoch_bits=20") {
		t.Errorf("generations list (text) lacks the v1 layout:\n%s", out)
	}
	// The fixture's 70 messages: 60 in sensors/+/temp, whose last epoch
	// becomes readable with dsd's first idle tick.
	count := func(filter string) int {
		out := strings.TrimSpace(dstool(t, d.GRPCAddr, "read", filter))
		if out == "" {
			return 0
		}
		return strings.Count(out, "\n") + 1
	}
	wait.For(t, 10*time.Second, "the 60 messages of sensors/+/temp", func() bool { return count("sensors/+/temp") == 60 })
	if n := count("#"); n != 70 {
		t.Fatalf("v1 fixture: %d messages, want 70", n)
	}

	dstool(t, d.GRPCAddr, "generations", "add")
	for _, g := range gens() {
		if g.Current != (g.Layout == "wildcard_optimized_v2") {
			t.Fatalf("after add: generation %+v; want the current ones v2 and the old ones v1", g)
		}
	}
	c, err := client.Dial(d.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: "dev03", Messages: []*storagev1.Message{
		{Topic: "sensors/dev03/temp", Payload: []byte("new"), Qos: 1},
	}}); err != nil {
		t.Fatal(err)
	}
	// v2: readable as soon as the Store returned, no epoch to wait for.
	if n := count("sensors/dev03/temp"); n != 6 {
		t.Fatalf("sensors/dev03/temp across both generations: %d messages, want 6", n)
	}
	for _, g := range gens() {
		if !g.Current {
			dstool(t, d.GRPCAddr, "generations", "drop", strconv.Itoa(g.Shard), strconv.Itoa(int(g.ID)))
		}
	}
	if out := dstool(t, d.GRPCAddr, "read", "#"); !strings.Contains(out, `sensors/dev03/temp "new"`) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("after dropping the v1 generations, read # = %q, want only the new message", out)
	}
}
