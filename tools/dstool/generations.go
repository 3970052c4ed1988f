package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

func newGenerationsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "generations",
		Aliases: []string{"gen", "generation"},
		Short:   "List, add and drop generations (time slices of each shard)",
	}
	var (
		asJSON bool
		shard  int
	)
	shardFlag := func(c *cobra.Command) {
		c.Flags().IntVar(&shard, "shard", -1, "only this shard (default: all)")
	}
	optShard := func() *uint32 {
		if shard < 0 {
			return nil
		}
		s := uint32(shard)
		return &s
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List live generations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			res, err := c.Admin.ListGenerations(ctx, &dsdv1.ListGenerationsRequest{Shard: optShard()})
			if err != nil {
				return err
			}
			return writeGenerations(cmd.OutOrStdout(), res.GetGenerations(), asJSON)
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per generation per line")
	shardFlag(list)
	add := &cobra.Command{
		Use:   "add",
		Short: "End the current generation and start a new one (admin)",
		Long:  "End the current generation of every shard (or of --shard) and start a new one with the configured layout.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			res, err := c.Admin.AddGeneration(ctx, &dsdv1.AddGenerationRequest{Shard: optShard()})
			if err != nil {
				return err
			}
			return writeGenerations(cmd.OutOrStdout(), res.GetGenerations(), asJSON)
		},
	}
	add.Flags().BoolVar(&asJSON, "json", false, "one JSON object per generation per line")
	shardFlag(add)
	drop := &cobra.Command{
		Use:   "drop <shard> <generation>",
		Short: "Delete a non-current generation and its messages (admin)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := strconv.ParseUint(args[0], 10, 16)
			if err != nil {
				return fmt.Errorf("shard %q: %w", args[0], err)
			}
			id, err := strconv.ParseUint(args[1], 10, 64)
			if err != nil {
				return fmt.Errorf("generation %q: %w", args[1], err)
			}
			c, ctx, done, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			if _, err := c.Admin.DropGeneration(ctx, &dsdv1.DropGenerationRequest{Shard: uint32(s), Generation: id}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "dropped generation %d of shard %d\n", id, s)
			return nil
		},
	}
	cmd.AddCommand(list, add, drop)
	return cmd
}

func writeGenerations(w io.Writer, gens []*dsdv1.ShardGeneration, asJSON bool) error {
	if !asJSON {
		fmt.Fprintf(w, "%-6s %-11s %-28s %-28s %-9s %s\n", "SHARD", "GENERATION", "SINCE", "UNTIL", "MESSAGES", "LAYOUT")
	}
	enc := json.NewEncoder(w)
	for _, sg := range gens {
		gen := sg.GetGeneration()
		l := gen.GetLayout()
		if asJSON {
			j := generationJSON{
				Shard: sg.GetShard(), ID: gen.GetId(), SinceUs: gen.GetSinceUs(), UntilUs: gen.GetUntilUs(),
				CreatedAtUs: gen.GetCreatedAtUs(), Current: gen.GetUntilUs() == 0, Messages: sg.GetMessages(),
				Layout: l.GetType(), BitsPerTopicLevel: l.GetBitsPerTopicLevel(), EpochBits: l.GetEpochBits(), TopicIndexBytes: l.GetTopicIndexBytes(),
			}
			if err := enc.Encode(j); err != nil {
				return err
			}
			continue
		}
		until := "current"
		if gen.GetUntilUs() != 0 {
			until = formatUs(gen.GetUntilUs())
		}
		// epoch_bits means something for wildcard_optimized (v1) only; v2
		// records 0.
		epoch := ""
		if l.GetType() == "wildcard_optimized" {
			epoch = fmt.Sprintf(" epoch_bits=%d", l.GetEpochBits())
		}
		fmt.Fprintf(w, "%-6d %-11d %-28s %-28s %-9d %s bits_per_topic_level=%d%s topic_index_bytes=%d\n",
			sg.GetShard(), gen.GetId(), formatUs(gen.GetSinceUs()), until, sg.GetMessages(),
			l.GetType(), l.GetBitsPerTopicLevel(), epoch, l.GetTopicIndexBytes())
	}
	return nil
}
