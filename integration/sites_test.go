package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/internal/testutil"
	"github.com/stratamq/strata/internal/testutil/testpki"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// siteInfo is what the sites test reads from `dstool info --json`.
type siteInfo struct {
	Site   string `json:"site"`
	NSites int    `json:"n_sites"`
	Sites  []struct {
		Site    string `json:"site"`
		Node    string `json:"node"`
		Address string `json:"address"`
		Up      bool   `json:"up"`
	} `json:"sites"`
	Shards []struct {
		Shard       int      `json:"shard"`
		Replicas    []string `json:"replicas"`
		Transitions []string `json:"transitions"`
		Leader      string   `json:"leader"`
	} `json:"shards"`
	MetaGroup struct {
		Leader string `json:"leader"`
		Term   uint64 `json:"term"`
	} `json:"meta_group"`
}

// info asks one dsd for its view; ok is false while it cannot answer (a
// killed site).
func clusterView(t *testing.T, d *DSD) (siteInfo, bool) {
	t.Helper()
	out, err := dstoolOutput(d.GRPCAddr, "info", "--json", "--timeout", "2s")
	if err != nil {
		return siteInfo{}, false
	}
	var info siteInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("dstool info --json: %v\n%s", err, out)
	}
	return info, true
}

func dstoolOutput(addr string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.Path("dstool"), append(args, "--addr", addr)...)
	out, err := cmd.Output()
	return string(out), err
}

// sitesLine renders a view's SITES for comparison between sites.
func sitesLine(info siteInfo) string {
	var parts []string
	for _, s := range info.Sites {
		parts = append(parts, fmt.Sprintf("%s/%s/%v", s.Site, s.Address, s.Up))
	}
	return strings.Join(parts, " ")
}

// TestThreeSites starts three dsd processes that form a cluster with
// --join (n_sites = 3, replication_factor = 3): every site sees the same
// three sites up and the same allocation (every shard on all three); after
// a SIGKILL of the metadata leader, the other two elect another and show
// it down; restarted on its data dir it comes back up with the same site id.
func TestThreeSites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "strata.toml")
	if err := os.WriteFile(conf, []byte("durable_storage.messages.n_shards = 4\ndurable_storage.messages.n_sites = 3\ndurable_storage.messages.replication_factor = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var sites []*DSD
	began := time.Now()
	defer func() {
		for _, d := range sites {
			_ = d.Stop(10 * time.Second)
		}
	}()
	for i := range 3 {
		cfg := DSDConfig{DataDir: filepath.Join(dir, fmt.Sprintf("site%d", i)), ConfigFile: conf}
		if i > 0 {
			cfg.Join = sites[0].GRPCAddr
		}
		d, err := StartDSD(ctx, bins, cfg)
		if err != nil {
			t.Fatal(err)
		}
		sites = append(sites, d)
	}

	// agree waits until every running site's view passes ok and all views
	// show the same SITES.
	agree := func(what string, running []*DSD, ok func(siteInfo) bool) []siteInfo {
		t.Helper()
		var views []siteInfo
		if !wait.Until(30*time.Second, func() bool {
			views = views[:0]
			for _, d := range running {
				v, answered := clusterView(t, d)
				if !answered || !ok(v) {
					return false
				}
				views = append(views, v)
			}
			for _, v := range views[1:] {
				if sitesLine(v) != sitesLine(views[0]) {
					return false
				}
			}
			return true
		}) {
			for i, d := range running {
				v, _ := clusterView(t, d)
				t.Logf("site %d view: %+v\nlog:\n%s", i, v, d.Log())
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		return views
	}
	allUp := func(v siteInfo) bool {
		if len(v.Sites) != 3 || v.MetaGroup.Leader == "" || len(v.Shards) != 4 {
			return false
		}
		for _, s := range v.Sites {
			if !s.Up {
				return false
			}
		}
		for _, sh := range v.Shards {
			// Every shard is replicated on the three: its group has a
			// leader, which every site names alike (checked below).
			if len(sh.Replicas) != 3 || sh.Leader == "" {
				return false
			}
		}
		return true
	}
	views := agree("three sites up, shards allocated, alike on all three", sites, allUp)
	t.Logf("cluster formed: %v from the first start to three sites up and the shards allocated on all three", time.Since(began).Round(time.Millisecond))
	wait.For(t, 10*time.Second, "every shard's leader named alike by the three sites", func() bool {
		var first siteInfo
		for i := range sites {
			v, ok := clusterView(t, sites[i])
			if i == 0 {
				first = v
			}
			if !ok || len(v.Shards) != len(first.Shards) {
				return false
			}
			for s := range v.Shards {
				if v.Shards[s].Leader == "" || v.Shards[s].Leader != first.Shards[s].Leader {
					return false
				}
			}
		}
		return true
	})
	ids := []string{views[0].Site, views[1].Site, views[2].Site}
	var listed []string
	for _, s := range views[0].Sites {
		listed = append(listed, s.Site)
	}
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	if !slices.Equal(listed, sorted) {
		t.Fatalf("SITES %v, want the three site ids %v", listed, sorted)
	}

	// The text form has seed 002's sections.
	text, err := dstoolOutput(sites[1].GRPCAddr, "info")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"THIS SITE:\n" + ids[1] + "\n", "SITES:\n", "SHARDS:\n", "messages/3 ", fmt.Sprintf("%s '", ids[2])} {
		if !strings.Contains(text, want) {
			t.Fatalf("dstool info lacks %q:\n%s", want, text)
		}
	}
	if strings.Count(text, "' up\n") != 3 {
		t.Fatalf("dstool info does not show three sites up:\n%s", text)
	}
	// REST on another site's HTTP port lists the same sites.
	var restSites []string
	if err := json.Unmarshal([]byte(httpBody(t, "http://"+sites[2].HTTPAddr+"/ds/sites")), &restSites); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(restSites, sorted) {
		t.Fatalf("GET /ds/sites %v, want %v", restSites, sorted)
	}
	var replicaSites []string
	if err := json.Unmarshal([]byte(httpBody(t, "http://"+sites[1].HTTPAddr+"/api/v5/ds/storages/messages/replicas")), &replicaSites); err != nil || !slices.Equal(replicaSites, sorted) {
		t.Fatalf("GET /api/v5/ds/storages/messages/replicas %v (%v), want %v", replicaSites, err, sorted)
	}
	if body := testutil.Metrics(t, sites[0].HTTPAddr); !strings.Contains(body, "strata_ds_meta_has_leader 1") || !strings.Contains(body, `strata_ds_sites{state="up"} 3`) {
		t.Fatalf("metrics lack the metadata group's leader or the three sites up")
	}

	// SIGKILL the metadata leader: the other two elect another and show
	// the killed site down.
	vi := slices.Index(ids, views[0].MetaGroup.Leader)
	if vi < 0 {
		t.Fatalf("leader %q is not one of the sites %v", views[0].MetaGroup.Leader, ids)
	}
	victim := sites[vi]
	var others []*DSD
	for i, d := range sites {
		if i != vi {
			others = append(others, d)
		}
	}
	killedAt := time.Now()
	victim.Kill()
	killedDown := func(v siteInfo) bool {
		if len(v.Sites) != 3 || v.MetaGroup.Leader == "" || v.MetaGroup.Leader == ids[vi] {
			return false
		}
		for _, s := range v.Sites {
			if s.Up == (s.Site == ids[vi]) {
				return false
			}
		}
		return true
	}
	views = agree("the killed leader down on the other two, which elect another leader", others, killedDown)
	t.Logf("SIGKILL of the metadata leader to the site shown down on both others, under a new leader: %v (election, then down_after 3s)", time.Since(killedAt).Round(time.Millisecond))
	if views[0].MetaGroup.Leader != views[1].MetaGroup.Leader {
		t.Fatalf("the two sites name different leaders: %s and %s", views[0].MetaGroup.Leader, views[1].MetaGroup.Leader)
	}
	var rest struct {
		Up bool `json:"up"`
	}
	if err := json.Unmarshal([]byte(httpBody(t, "http://"+others[0].HTTPAddr+"/ds/sites/"+ids[vi])), &rest); err != nil || rest.Up {
		t.Fatalf("GET /ds/sites/%s: up %v (%v), want down", ids[vi], rest.Up, err)
	}

	// Restart it on its data dir: the same site, up again everywhere.
	restartAt := time.Now()
	restarted, err := victim.KillAndRestart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sites[vi] = restarted
	views = agree("the restarted site up again on all three", sites, allUp)
	t.Logf("restart to the site shown up on all three: %v", time.Since(restartAt).Round(time.Millisecond))
	if views[vi].Site != ids[vi] {
		t.Fatalf("the restarted site is %s, was %s", views[vi].Site, ids[vi])
	}
	// raft's own info lines (elections, votes) stay out of dsd's log.
	for i, d := range sites {
		if strings.Contains(d.Log(), "became follower") || strings.Contains(d.Log(), "became leader") {
			t.Fatalf("site %d's log has raft's info lines:\n%s", i, d.Log())
		}
	}
}

func httpBody(t *testing.T, url string) string {
	t.Helper()
	status, body := testutil.Get(t, url)
	if status != 200 {
		t.Fatalf("GET %s: %d %s", url, status, body)
	}
	return body
}

// TestSitesMutualTLS: with dsd's TLS keys, sites link and join over mutual
// TLS, each mapping the other's certificate name to the site role; a dsd
// whose certificate the CA signed but whose name maps to no site role is
// refused at Join and never becomes a member.
func TestSitesMutualTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pki := testpki.New(t)
	dir := t.TempDir()
	opsCert, opsKey := pki.Issue(t, "ops", false)
	config := func(name string) string {
		cert, key := pki.IssueWith(t, name, testpki.IssueOptions{Server: true, ClientToo: true})
		path := filepath.Join(dir, name+".toml")
		cfg := fmt.Sprintf(`
durable_storage.messages.n_shards = 4
durable_storage.messages.n_sites = 2
[dsd.tls]
certfile = %q
keyfile = %q
cacertfile = %q
[dsd.tls.roles]
"site-a" = "site"
"site-b" = "site"
"ops" = "admin"
`, cert, key, pki.CAFile)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tlsArgs := []string{"--tls-ca", pki.CAFile, "--tls-cert", opsCert, "--tls-key", opsKey}
	view := func(d *DSD) (siteInfo, bool) {
		out, err := dstoolOutput(d.GRPCAddr, append([]string{"info", "--json", "--timeout", "2s"}, tlsArgs...)...)
		if err != nil {
			return siteInfo{}, false
		}
		var info siteInfo
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("dstool info --json: %v\n%s", err, out)
		}
		return info, true
	}
	a, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(dir, "a"), ConfigFile: config("site-a")})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop(10 * time.Second)
	b, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(dir, "b"), ConfigFile: config("site-b"), Join: a.GRPCAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop(10 * time.Second)
	x, err := StartDSD(ctx, bins, DSDConfig{DataDir: filepath.Join(dir, "x"), ConfigFile: config("intruder"), Join: a.GRPCAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Stop(10 * time.Second)

	if !wait.Until(30*time.Second, func() bool {
		for _, d := range []*DSD{a, b} {
			v, ok := view(d)
			if !ok || len(v.Sites) != 2 || !v.Sites[0].Up || !v.Sites[1].Up || v.MetaGroup.Leader == "" || len(v.Shards) != 4 || len(v.Shards[0].Replicas) != 2 {
				return false
			}
		}
		return true
	}) {
		va, _ := view(a)
		t.Fatalf("two sites over mTLS did not form a cluster: %+v\na:\n%s\nb:\n%s", va, tail(a.Log(), 30), tail(b.Log(), 30))
	}
	wait.For(t, 30*time.Second, "the intruder's Join refused", func() bool {
		return strings.Contains(x.Log(), "cannot join the cluster yet") && strings.Contains(x.Log(), "PermissionDenied")
	})
	if v, _ := view(a); len(v.Sites) != 2 {
		t.Fatalf("a site without the site role became a member: %+v", v.Sites)
	}
}
