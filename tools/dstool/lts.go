package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

func newLTSCmd(g *globals) *cobra.Command {
	var (
		asJSON bool
		gen    uint64
	)
	cmd := &cobra.Command{
		Use:   "lts <shard>",
		Short: "Show the learned topic structure of a shard (levels learned as varying print as +)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			shard, err := strconv.ParseUint(args[0], 10, 16)
			if err != nil {
				return fmt.Errorf("shard %q: %w", args[0], err)
			}
			c, ctx, done, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			req := &dsdv1.LearnedStructureRequest{Shard: uint32(shard)}
			if gen != 0 {
				req.Generation = &gen
			}
			res, err := c.Admin.LearnedStructure(ctx, req)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				type streamJSON struct {
					StaticIndex string `json:"static_index"`
					Structure   string `json:"structure"`
					Messages    uint64 `json:"messages"`
				}
				out := struct {
					Shard      uint32       `json:"shard"`
					Generation uint64       `json:"generation"`
					TrieStates uint64       `json:"trie_states"`
					AtCapacity bool         `json:"at_capacity"`
					Streams    []streamJSON `json:"streams"`
				}{res.GetShard(), res.GetGeneration(), res.GetTrieStates(), res.GetAtCapacity(), []streamJSON{}}
				for _, st := range res.GetStreams() {
					out.Streams = append(out.Streams, streamJSON{hex.EncodeToString(st.GetStaticIndex()), st.GetStructure(), st.GetMessages()})
				}
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			capacity := ""
			if res.GetAtCapacity() {
				capacity = " (at max_trie_states: new values are learned as varying)"
			}
			fmt.Fprintf(w, "shard %d, generation %d: %d streams, %d trie states%s\n\n", res.GetShard(), res.GetGeneration(), len(res.GetStreams()), res.GetTrieStates(), capacity)
			fmt.Fprintf(w, "%-18s %-10s %s\n", "STATIC INDEX", "MESSAGES", "STRUCTURE")
			for _, st := range res.GetStreams() {
				fmt.Fprintf(w, "%-18s %-10d %s\n", hex.EncodeToString(st.GetStaticIndex()), st.GetMessages(), st.GetStructure())
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().Uint64Var(&gen, "generation", 0, "generation id (default: the current one)")
	return cmd
}
