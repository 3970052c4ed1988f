package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

func newInfoCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show the site, its shards and their generations",
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
}

type shardJSON struct {
	Shard             uint32 `json:"shard"`
	ReadableClockUs   int64  `json:"readable_clock_us"`
	CurrentGeneration uint64 `json:"current_generation"`
	Messages          uint64 `json:"messages"`
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
	out := infoJSON{Site: info.GetSite(), Version: info.GetVersion(), NShards: info.GetNShards(), DataDirFormat: info.GetDataDirFormat(), Shards: []shardJSON{}, Generations: []generationJSON{}}
	for _, s := range info.GetShards() {
		var total uint64
		for _, n := range s.GetMessages() {
			total += n
		}
		out.Shards = append(out.Shards, shardJSON{Shard: s.GetShard(), ReadableClockUs: s.GetReadableClockUs(), CurrentGeneration: s.GetCurrentGeneration(), Messages: total})
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

func writeInfoText(w io.Writer, info *dsdv1.InfoResponse) {
	j := toInfoJSON(info)
	fmt.Fprintf(w, "site      %s\nversion   %s\nshards    %d\nformat    %d\n\n", j.Site, orUnknown(j.Version), j.NShards, j.DataDirFormat)
	fmt.Fprintf(w, "%-6s %-12s %-28s %s\n", "SHARD", "GENERATION", "READABLE CLOCK", "MESSAGES")
	for _, s := range j.Shards {
		fmt.Fprintf(w, "%-6d %-12d %-28s %d\n", s.Shard, s.CurrentGeneration, formatUs(s.ReadableClockUs), s.Messages)
	}
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
