package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

func newInfoCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show this site, the cluster's sites, the shards' replicas and transitions, and this site's generations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			info, err := c.Storage.Info(ctx, &dsdv1.InfoRequest{})
			if err != nil {
				return err
			}
			if asJSON {
				return writeInfoJSON(cmd.OutOrStdout(), info)
			}
			writeInfoText(cmd.OutOrStdout(), info)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

type infoJSON struct {
	Site          string           `json:"site"`
	Version       string           `json:"version"`
	NShards       uint32           `json:"n_shards"`
	DataDirFormat uint32           `json:"data_dir_format"`
	Shards        []shardJSON      `json:"shards"`
	Generations   []generationJSON `json:"generations"`
	// Sites are the cluster's members, as the metadata group records them.
	Sites []siteJSON `json:"sites"`
	// NSites is the site's n_sites; MetaGroup the metadata group's status.
	NSites    uint32         `json:"n_sites,omitempty"`
	MetaGroup *metaGroupJSON `json:"meta_group,omitempty"`
}

type shardJSON struct {
	Shard             uint32 `json:"shard"`
	ReadableClockUs   int64  `json:"readable_clock_us"`
	CurrentGeneration uint64 `json:"current_generation"`
	Messages          uint64 `json:"messages"`
	// Replicas are the sites that hold the shard (empty before the first
	// allocation); Transitions the pending changes, "+site" or "-site".
	Replicas    []string `json:"replicas"`
	Transitions []string `json:"transitions"`
	// Leader is the leader of a replicated shard whose replica this site
	// holds, as it knows it ("" otherwise: unknown, or not replicated).
	Leader string `json:"leader,omitempty"`
}

type siteJSON struct {
	Site    string `json:"site"`
	Node    string `json:"node"`
	Address string `json:"address"`
	Up      bool   `json:"up"`
}

type metaGroupJSON struct {
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
}

type generationJSON struct {
	Shard             uint32 `json:"shard"`
	ID                uint64 `json:"id"`
	SinceUs           int64  `json:"since_us"`
	UntilUs           int64  `json:"until_us,omitempty"`
	CreatedAtUs       int64  `json:"created_at_us"`
	Current           bool   `json:"current"`
	Messages          uint64 `json:"messages"`
	Layout            string `json:"layout"`
	BitsPerTopicLevel uint32 `json:"bits_per_topic_level"`
	EpochBits         uint32 `json:"epoch_bits"`
	TopicIndexBytes   uint32 `json:"topic_index_bytes"`
}

func toInfoJSON(info *dsdv1.InfoResponse) infoJSON {
	out := infoJSON{Site: info.GetSite(), Version: info.GetVersion(), NShards: info.GetNShards(), DataDirFormat: info.GetDataDirFormat(), Shards: []shardJSON{}, Generations: []generationJSON{}, Sites: []siteJSON{}}
	cl := info.GetCluster()
	for _, s := range cl.GetState().GetSites() {
		out.Sites = append(out.Sites, siteJSON{Site: s.GetId(), Node: s.GetNode(), Address: s.GetAddress(), Up: s.GetUp()})
	}
	if cl != nil {
		out.NSites = cl.GetNSites()
		out.MetaGroup = &metaGroupJSON{Leader: cl.GetLeader(), Term: cl.GetTerm(), CommitIndex: cl.GetCommitIndex(), AppliedIndex: cl.GetAppliedIndex()}
	}
	placements := cl.GetState().GetMessages().GetShards()
	leaders := map[uint32]string{}
	for _, g := range cl.GetShardGroups() {
		leaders[g.GetShard()] = g.GetLeader()
	}
	for _, s := range info.GetShards() {
		var total uint64
		for _, n := range s.GetMessages() {
			total += n
		}
		sj := shardJSON{Shard: s.GetShard(), ReadableClockUs: s.GetReadableClockUs(), CurrentGeneration: s.GetCurrentGeneration(), Messages: total, Replicas: []string{}, Transitions: []string{},
			Leader: leaders[s.GetShard()]}
		if int(s.GetShard()) < len(placements) {
			sp := placements[s.GetShard()]
			sj.Replicas = append(sj.Replicas, sp.GetReplicas()...)
			for _, t := range sp.GetTransitions() {
				sj.Transitions = append(sj.Transitions, transitionText(t))
			}
		}
		out.Shards = append(out.Shards, sj)
		for _, gen := range s.GetGenerations() {
			l := gen.GetLayout()
			out.Generations = append(out.Generations, generationJSON{
				Shard: s.GetShard(), ID: gen.GetId(), SinceUs: gen.GetSinceUs(), UntilUs: gen.GetUntilUs(),
				CreatedAtUs: gen.GetCreatedAtUs(), Current: gen.GetUntilUs() == 0, Messages: s.GetMessages()[gen.GetId()],
				Layout: l.GetType(), BitsPerTopicLevel: l.GetBitsPerTopicLevel(), EpochBits: l.GetEpochBits(), TopicIndexBytes: l.GetTopicIndexBytes(),
			})
		}
	}
	sort.Slice(out.Shards, func(i, j int) bool { return out.Shards[i].Shard < out.Shards[j].Shard })
	return out
}

func writeInfoJSON(w io.Writer, info *dsdv1.InfoResponse) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(toInfoJSON(info))
}

// writeInfoText prints the sections of seed 002's `ds info` (THIS SITE,
// SITES, SHARDS, REPLICA TRANSITIONS when any are pending), then the
// metadata group's status and this site's own storage.
func writeInfoText(w io.Writer, info *dsdv1.InfoResponse) {
	j := toInfoJSON(info)
	fmt.Fprintf(w, "THIS SITE:\n%s\n", j.Site)
	if info.GetCluster() != nil {
		fmt.Fprintln(w, "SITES:")
		for _, s := range j.Sites {
			state := "up"
			if !s.Up {
				state = "(x) down"
			}
			fmt.Fprintf(w, "%s '%s' %s\n", s.Site, s.Node, state)
		}
		fmt.Fprintln(w, "SHARDS:")
		allocated := false
		for _, s := range j.Shards {
			allocated = allocated || len(s.Replicas) > 0
		}
		if !allocated {
			fmt.Fprintf(w, "not allocated yet: %d of n_sites = %d sites are members\n", len(j.Sites), j.NSites)
		} else {
			fmt.Fprintf(w, "%-14s %s\n", "Shard", "Replicas")
			for _, s := range j.Shards {
				fmt.Fprintf(w, "%-14s %s\n", fmt.Sprintf("messages/%d", s.Shard), strings.Join(s.Replicas, " "))
			}
		}
		var pending []string
		for _, s := range j.Shards {
			if len(s.Transitions) > 0 {
				pending = append(pending, fmt.Sprintf("%-14s %s", fmt.Sprintf("messages/%d", s.Shard), strings.Join(s.Transitions, " ")))
			}
		}
		if len(pending) > 0 {
			fmt.Fprintf(w, "REPLICA TRANSITIONS:\n%-14s %s\n%s\n", "Shard", "Transitions", strings.Join(pending, "\n"))
		}
		m := j.MetaGroup
		fmt.Fprintf(w, "METADATA GROUP:\nleader %s  term %d  commit %d  applied %d\n", cmp.Or(m.Leader, "none"), m.Term, m.CommitIndex, m.AppliedIndex)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "site      %s\nversion   %s\nshards    %d\nformat    %d\n\n", j.Site, orUnknown(j.Version), j.NShards, j.DataDirFormat)
	fmt.Fprintf(w, "%-6s %-12s %-28s %s\n", "SHARD", "GENERATION", "READABLE CLOCK", "MESSAGES")
	for _, s := range j.Shards {
		fmt.Fprintf(w, "%-6d %-12d %-28s %d\n", s.Shard, s.CurrentGeneration, formatUs(s.ReadableClockUs), s.Messages)
	}
}

// transitionText is "+site" or "-site", as seed 002 prints transitions.
func transitionText(t *clusterv1.Transition) string {
	if t.GetOp() == clusterv1.TransitionOp_TRANSITION_OP_DEL {
		return "-" + t.GetSite()
	}
	return "+" + t.GetSite()
}

// orUnknown stands in for a version an older dsd does not report.
func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func formatUs(us int64) string {
	if us <= 0 {
		return "-"
	}
	return time.UnixMicro(us).UTC().Format("2006-01-02T15:04:05.000000Z")
}
