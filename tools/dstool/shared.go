package main

import (
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// newSharedCmd lists shared subscription groups: what each has handed out
// and to whom, and what waits for a member (docs/shared-subscriptions.md).
func newSharedCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "shared ['$share/<group>/<filter>']",
		Short: "List shared subscription groups: streams, grants held by members, grants waiting",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			req := &dsdv1.ListSharedGroupsRequest{}
			if len(args) == 1 {
				req.Filter = args[0]
			}
			res, err := c.Admin.ListSharedGroups(ctx, req)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				for _, gr := range res.GetGroups() {
					b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(gr)
					if err != nil {
						return err
					}
					fmt.Fprintln(w, string(b))
				}
				return nil
			}
			writeSharedGroups(w, res.GetGroups(), len(args) == 1)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per group per line")
	return cmd
}

// writeSharedGroups prints a line per group, and with detail a line per
// grant.
func writeSharedGroups(w io.Writer, groups []*dsdv1.SharedGroup, detail bool) {
	fmt.Fprintf(w, "%-40s %-5s %-7s %-7s %-8s %s\n", "GROUP", "SHARD", "STREAMS", "GRANTS", "WAITING", "MEMBERS HOLDING GRANTS")
	for _, gr := range groups {
		waiting := 0
		var members []string
		for _, g := range gr.GetGrants() {
			if g.GetMember() == "" {
				waiting++
			} else if !slices.Contains(members, g.GetMember()) {
				members = append(members, g.GetMember())
			}
		}
		slices.Sort(members)
		fmt.Fprintf(w, "%-40s %-5d %-7d %-7d %-8d %v\n", gr.GetFilter(), gr.GetShard(), len(gr.GetStreams()), len(gr.GetGrants()), waiting, members)
		if !detail {
			continue
		}
		for _, g := range gr.GetGrants() {
			member := g.GetMember()
			if member == "" {
				member = "(waiting)"
			}
			fmt.Fprintf(w, "  grant %-8d %-24s shard %-3d gen %-3d %4d messages qos2=%t redelivery=%t\n",
				g.GetId(), member, g.GetShard(), g.GetGeneration(), g.GetCount(), g.GetQos2(), g.GetRedelivery())
		}
	}
}
