package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/stratamq/strata/internal/childproc"
	"github.com/stratamq/strata/internal/testutil/tcpproxy"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// proxiedSites are three dsd processes (replication factor 3) whose
// site-to-site traffic all goes through userspace TCP proxies: site i
// listens on its own port and advertises proxies[i], which forwards to it.
// A site's link to another is dialed by the smaller site id, so it passes
// the proxy of the larger; each proxy labels the connections it accepts
// with the site that dialed them (siteLabel, from /proc), so one site can
// be cut from the others in both directions or in one. The test's own
// clients dial the sites directly: a client stays on its side of a
// partition.
type proxiedSites struct {
	t       *testing.T
	sites   []*DSD
	proxies []*tcpproxy.Proxy
	http    []string
	dirs    []string
}

func startProxiedSites(t *testing.T, ctx context.Context, nShards int) *proxiedSites {
	t.Helper()
	dir := t.TempDir()
	ps := &proxiedSites{t: t}
	for i := range 3 {
		ps.dirs = append(ps.dirs, filepath.Join(dir, fmt.Sprintf("site%d", i)))
	}
	t.Cleanup(func() {
		for _, d := range ps.sites {
			_ = d.Stop(10 * time.Second)
		}
		for _, p := range ps.proxies {
			_ = p.Close()
		}
	})
	grpcAddrs := make([]string, 3)
	for i := range 3 {
		port, err := childproc.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		grpcAddrs[i] = fmt.Sprintf("127.0.0.1:%d", port)
		p, err := tcpproxy.New(grpcAddrs[i], tcpproxy.Options{Label: siteLabel(ps.dirs)})
		if err != nil {
			t.Fatal(err)
		}
		ps.proxies = append(ps.proxies, p)
	}
	for i := range 3 {
		conf := filepath.Join(dir, fmt.Sprintf("strata%d.toml", i))
		body := fmt.Sprintf("durable_storage.messages.n_shards = %d\ndurable_storage.messages.n_sites = 3\n"+
			"durable_storage.messages.replication_factor = 3\ndsd.advertise_address = %q\n", nShards, ps.proxies[i].Addr())
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := DSDConfig{DataDir: ps.dirs[i], ConfigFile: conf, GRPCListen: grpcAddrs[i]}
		if i > 0 {
			cfg.Join = ps.proxies[0].Addr()
		}
		d, err := StartDSD(ctx, bins, cfg)
		if err != nil {
			t.Fatal(err)
		}
		ps.sites = append(ps.sites, d)
		ps.http = append(ps.http, d.HTTPAddr)
	}
	return ps
}

// siteOf maps a site's gRPC address or its proxy's (the address other
// sites and refusals name) to its index; -1 for neither.
func (ps *proxiedSites) siteOf(addr string) int {
	for i, d := range ps.sites {
		if addr == d.GRPCAddr || addr == ps.proxies[i].Addr() {
			return i
		}
	}
	return -1
}

// checkLinksProxied fails the test unless every pair of sites has a link
// through a proxy, dialed by a site the proxy recognized: else a cut would
// cut nothing, or the wrong thing.
func (ps *proxiedSites) checkLinksProxied() {
	ps.t.Helper()
	for a := range 3 {
		for b := a + 1; b < 3; b++ {
			wait.For(ps.t, 10*time.Second, fmt.Sprintf("a link between sites %d and %d through a proxy", a, b), func() bool {
				return ps.proxies[b].Stats().Accepted[siteName(a)] > 0 || ps.proxies[a].Stats().Accepted[siteName(b)] > 0
			})
		}
	}
	for i, p := range ps.proxies {
		if st := p.Stats(); st.Accepted[""] > 0 {
			ps.t.Fatalf("proxy %d accepted %d connections it could not attribute to a site: %v", i, st.Accepted[""], st.Accepted)
		}
	}
}

// cut is how a site is cut from the others.
type cut int

const (
	cutBoth cut = iota // nothing passes either way
	cutIn              // the site hears nothing; what it sends arrives
	cutOut             // nothing it sends arrives; it hears the others
)

func (c cut) String() string {
	return [...]string{"both directions", "inbound only (it sends, it does not receive)", "outbound only (it receives, it does not send)"}[c]
}

// isolate cuts site x from the other two as c says: on x's proxy every
// connection (the others dialed x: up is toward x), on the others' the
// connections x dialed (up is from x).
func (ps *proxiedSites) isolate(x int, c cut) {
	onX, onOthers := tcpproxy.Block, tcpproxy.Block
	switch c {
	case cutIn:
		onX, onOthers = tcpproxy.BlockUp, tcpproxy.BlockDown
	case cutOut:
		onX, onOthers = tcpproxy.BlockDown, tcpproxy.BlockUp
	}
	ps.proxies[x].Set(onX)
	for y, p := range ps.proxies {
		if y != x {
			p.SetLabel(siteName(x), onOthers)
		}
	}
}

func (ps *proxiedSites) heal() {
	for _, p := range ps.proxies {
		p.Heal()
	}
}

func (ps *proxiedSites) dumpLogs() {
	for i, d := range ps.sites {
		ps.t.Logf("site %d log:\n%s", i, tail(d.Log(), 40))
	}
}

func siteName(i int) string { return fmt.Sprintf("site%d", i) }

// siteLabel labels a proxied connection with the site that dialed it:
// the dialer's socket is found in /proc/net/tcp (its local port is the
// connection's remote port, and it is connected to the proxy's port), its
// process among the test's children by its file descriptors, and the site
// by the process's --data-dir. "" when none matches (the test fails on
// it: checkLinksProxied).
func siteLabel(dataDirs []string) func(net.Conn) string {
	return func(c net.Conn) string {
		from, to := c.RemoteAddr().(*net.TCPAddr), c.LocalAddr().(*net.TCPAddr)
		inode := socketInode(from.Port, to.Port)
		if inode == "" {
			return ""
		}
		for _, pid := range childPids() {
			if !ownsSocket(pid, inode) {
				continue
			}
			args, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			parts := strings.Split(string(args), "\x00")
			for j, a := range parts {
				if a == "--data-dir" && j+1 < len(parts) {
					if i := slices.Index(dataDirs, parts[j+1]); i >= 0 {
						return siteName(i)
					}
				}
			}
		}
		return ""
	}
}

// socketInode is the inode of the loopback TCP socket whose local port is
// local and remote port remote ("" if none).
func socketInode(local, remote int) string {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return ""
	}
	want := fmt.Sprintf(":%04X", local)
	wantRemote := fmt.Sprintf(":%04X", remote)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 10 && strings.HasSuffix(f[1], want) && strings.HasSuffix(f[2], wantRemote) {
			return f[9]
		}
	}
	return ""
}

// childPids are the processes whose parent is the test process.
func childPids() []int {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, not ")".
		i := bytes.LastIndexByte(stat, ')')
		if f := strings.Fields(string(stat[i+1:])); len(f) > 1 && f[1] == strconv.Itoa(self) {
			out = append(out, pid)
		}
	}
	return out
}

func ownsSocket(pid int, inode string) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	want := "socket:[" + inode + "]"
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == want {
			return true
		}
	}
	return false
}

// shardState is one site's view of one replicated shard.
type shardState struct {
	term, commit, applied uint64
	leader, hasLeader     bool
}

var shardGaugeRE = regexp.MustCompile(`(?m)^strata_ds_shard_raft_(term|is_leader|has_leader|commit_index|applied_index)\{shard="(\d+)"\} (\S+)$`)

// metaGroup is the key of the metadata group among the shards of
// shardStates.
const metaGroup = -1

var metaGaugeRE = regexp.MustCompile(`(?m)^strata_ds_meta_(term|leader) (\S+)$`)

// shardStates scrapes one site's shard gauges at once, and the metadata
// group's term and leadership under metaGroup; nil when it does not
// answer.
func shardStates(httpAddr string) map[int]shardState {
	b := scrapeMetrics(httpAddr)
	if b == nil {
		return nil
	}
	out := map[int]shardState{}
	for _, m := range shardGaugeRE.FindAllSubmatch(b, -1) {
		shard, _ := strconv.Atoi(string(m[2]))
		v, _ := strconv.ParseFloat(string(m[3]), 64)
		s := out[shard]
		switch string(m[1]) {
		case "term":
			s.term = uint64(v)
		case "is_leader":
			s.leader = v == 1
		case "has_leader":
			s.hasLeader = v == 1
		case "commit_index":
			s.commit = uint64(v)
		case "applied_index":
			s.applied = uint64(v)
		}
		out[shard] = s
	}
	for _, m := range metaGaugeRE.FindAllSubmatch(b, -1) {
		v, _ := strconv.ParseFloat(string(m[2]), 64)
		s := out[metaGroup]
		if string(m[1]) == "term" {
			s.term = uint64(v)
		} else {
			s.leader = v == 1
		}
		out[metaGroup] = s
	}
	return out
}

// termWatch scrapes every site's shard gauges every 25 ms and records, per
// shard (and for the metadata group) and term, the sites seen leading it: two leaders of one term would
// be a split brain. A sample counts when two scrapes in a row of the site
// show it leading in the same term (a scrape reads the leader flag and the
// term one after the other, and a step down between the two reads would
// pair the old flag with the new term).
type termWatch struct {
	mu      sync.Mutex
	leaders map[[2]uint64]map[int]bool // (shard, term) → sites
	last    []map[int]shardState
	stop    chan struct{}
	done    chan struct{}
}

func watchTerms(t *testing.T, httpAddrs []string) *termWatch {
	w := &termWatch{leaders: map[[2]uint64]map[int]bool{}, last: make([]map[int]shardState, len(httpAddrs)),
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		prev := make([]map[int]shardState, len(httpAddrs))
		for {
			for i, a := range httpAddrs {
				cur := shardStates(a)
				for shard, s := range cur {
					if p, ok := prev[i][shard]; ok && s.leader && p.leader && p.term == s.term {
						w.mu.Lock()
						k := [2]uint64{uint64(int64(shard)), s.term}
						if w.leaders[k] == nil {
							w.leaders[k] = map[int]bool{}
						}
						w.leaders[k][i] = true
						w.mu.Unlock()
					}
				}
				prev[i] = cur
				w.mu.Lock()
				w.last[i] = cur
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *termWatch) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// leaderOf is the site that the last scrapes show leading shard, not
// counting the sites in except (-1: none).
func (w *termWatch) leaderOf(shard int, except ...int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	best, bestTerm := -1, uint64(0)
	for i, st := range w.last {
		if s, ok := st[shard]; ok && s.leader && !slices.Contains(except, i) && s.term >= bestTerm {
			best, bestTerm = i, s.term
		}
	}
	return best
}

// check fails the test if any term of any shard had two leaders, and
// returns how many (group, term) leaderships it saw.
func (w *termWatch) check(t *testing.T) int {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, sites := range w.leaders {
		if len(sites) > 1 {
			group := fmt.Sprintf("shard %d", int64(k[0]))
			if int64(k[0]) == metaGroup {
				group = "the metadata group"
			}
			t.Errorf("split brain: %s had %d leaders in term %d: sites %v", group, len(sites), k[1], sites)
		}
	}
	return len(w.leaders)
}

// converged waits until every site has applied every shard's log up to
// the commit index its leader had when called (so also what was committed
// while a site was cut off), and the sites agree on the term.
func (ps *proxiedSites) converged(nShards int, timeout time.Duration) bool {
	target := map[int]uint64{}
	if !wait.Until(timeout, func() bool {
		for shard := range nShards {
			for _, a := range ps.http {
				if s, ok := shardStates(a)[shard]; ok && s.leader {
					target[shard] = s.commit
				}
			}
			if _, ok := target[shard]; !ok {
				return false
			}
		}
		return true
	}) {
		return false
	}
	return wait.Until(timeout, func() bool {
		terms := map[int]uint64{}
		for _, a := range ps.http {
			st := shardStates(a)
			for shard, commit := range target {
				if st[shard].applied < commit {
					return false
				}
				if t, ok := terms[shard]; ok && t != st[shard].term {
					return false
				}
				terms[shard] = st[shard].term
			}
		}
		return true
	})
}

// replicatedTags are the keyspaces of a shard that its raft group
// replicates, so its replicas hold them byte for byte alike
// (dsd/storage/keys.go): the shard clock, producers, session guard
// counter, sessions, shared groups, the applied index and the
// generations' data. Not the generation records (tag 02): their
// created_at is each site's own clock.
var replicatedTags = []byte{0x01, 0x03, 0x08, 0x09, 0x0B, 0x0C, 0x10}

// stopAndCompare stops the three sites at once (SIGTERM: each closes its
// storage), then reads each shard's replicated keyspaces from every data
// dir and reports the shards whose replicas differ; it also returns the
// number of keys compared.
func (ps *proxiedSites) stopAndCompare(nShards int) (differ []string, keys int) {
	ps.t.Helper()
	var wg sync.WaitGroup
	for _, d := range ps.sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Stop(10 * time.Second); err != nil {
				ps.t.Errorf("stop: %v", err)
			}
		}()
	}
	wg.Wait()
	digests := make([][]string, len(ps.dirs))
	for i, dir := range ps.dirs {
		db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true})
		if err != nil {
			ps.t.Fatalf("open site %d's data dir: %v", i, err)
		}
		for shard := range nShards {
			var b strings.Builder
			n := 0
			for _, tag := range replicatedTags {
				prefix := []byte{byte(shard >> 8), byte(shard), tag}
				it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: []byte{byte(shard >> 8), byte(shard), tag + 1}})
				if err != nil {
					ps.t.Fatal(err)
				}
				for it.First(); it.Valid(); it.Next() {
					fmt.Fprintf(&b, "%x=%x\n", it.Key(), it.Value())
					n++
				}
				if err := it.Close(); err != nil {
					ps.t.Fatal(err)
				}
			}
			digests[i] = append(digests[i], b.String())
			if i == 0 {
				keys += n
			}
		}
		if err := db.Close(); err != nil {
			ps.t.Fatal(err)
		}
	}
	for shard := range nShards {
		for i := 1; i < len(digests); i++ {
			if digests[i][shard] != digests[0][shard] {
				differ = append(differ, fmt.Sprintf("shard %d: site %d and site 0 differ:\n%s", shard, i, firstDiff(digests[0][shard], digests[i][shard])))
			}
		}
	}
	return differ, keys
}

// firstDiff shows the first line where a and b differ.
func firstDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(la), len(lb)) {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			return fmt.Sprintf("line %d: %q vs %q (%d and %d lines)", i, x, y, len(la), len(lb))
		}
	}
	return "same"
}

var sitesGaugeRE = regexp.MustCompile(`(?m)^strata_ds_sites\{state="(up|down)"\} (\S+)$`)

// siteLiveness is how many sites the metadata group records up and down,
// as the site at httpAddr has applied it; ok is false when it does not
// answer.
func siteLiveness(httpAddr string) (up, down int, ok bool) {
	b := scrapeMetrics(httpAddr)
	if b == nil {
		return 0, 0, false
	}
	for _, m := range sitesGaugeRE.FindAllSubmatch(b, -1) {
		v, _ := strconv.ParseFloat(string(m[2]), 64)
		if string(m[1]) == "up" {
			up = int(v)
		} else {
			down = int(v)
		}
	}
	return up, down, true
}

// scrapeMetrics is the body of dsd's /metrics at httpAddr (nil: no
// answer within a second).
func scrapeMetrics(httpAddr string) []byte {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	return b
}
