package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

func newStreamsCmd(g *globals) *cobra.Command {
	var (
		asJSON bool
		shard  int
		since  string
	)
	cmd := &cobra.Command{
		Use:   "streams <topic filter>",
		Short: "List the streams that can hold messages matching a topic filter",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sinceUs, err := parseSince(since, nowFunc())
			if err != nil {
				return err
			}
			c, ctx, done, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			req := &dsdv1.GetStreamsRequest{TopicFilter: args[0], StartTimeUs: sinceUs}
			if shard >= 0 {
				s := uint32(shard)
				req.Shard = &s
			}
			res, err := c.Storage.GetStreams(ctx, req)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if !asJSON {
				fmt.Fprintf(w, "%-6s %-11s %-18s %s\n", "SHARD", "GENERATION", "STATIC INDEX", "STRUCTURE")
			}
			enc := json.NewEncoder(w)
			for _, st := range res.GetStreams() {
				if asJSON {
					if err := enc.Encode(map[string]any{"shard": st.GetShard(), "generation": st.GetGeneration(), "static_index": hex.EncodeToString(st.GetStaticIndex()), "structure": st.GetStructure()}); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(w, "%-6d %-11d %-18s %s\n", st.GetShard(), st.GetGeneration(), hex.EncodeToString(st.GetStaticIndex()), st.GetStructure())
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per stream per line")
	cmd.Flags().IntVar(&shard, "shard", -1, "only this shard (default: all)")
	cmd.Flags().StringVar(&since, "since", "", "skip generations that ended before this (as for read)")
	return cmd
}
