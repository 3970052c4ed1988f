package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// The replica site list of the storage (seed 002's ds set_replicas, join
// and leave): each changes the shards' target replicas, and the sites run
// the transitions in the background (dstool info shows them pending).

func newSetReplicasCmd(g *globals) *cobra.Command {
	return replicasCmd(g, &cobra.Command{
		Use:   "set-replicas SITE...",
		Short: "Set the sites that hold the storage's replicas; the shards move in the background",
		Args:  cobra.MinimumNArgs(1),
	}, func(args []string) *dsdv1.UpdateReplicasRequest {
		return &dsdv1.UpdateReplicasRequest{Change: &dsdv1.UpdateReplicasRequest_Set{Set: &dsdv1.ReplicaSites{Sites: args}}}
	})
}

func newJoinCmd(g *globals) *cobra.Command {
	return replicasCmd(g, &cobra.Command{
		Use:   "join SITE",
		Short: "Add a site to the storage's replica sites",
		Args:  cobra.ExactArgs(1),
	}, func(args []string) *dsdv1.UpdateReplicasRequest {
		return &dsdv1.UpdateReplicasRequest{Change: &dsdv1.UpdateReplicasRequest_Join{Join: args[0]}}
	})
}

func newLeaveCmd(g *globals) *cobra.Command {
	return replicasCmd(g, &cobra.Command{
		Use:   "leave SITE",
		Short: "Remove a site from the storage's replica sites; its shards move to the others",
		Args:  cobra.ExactArgs(1),
	}, func(args []string) *dsdv1.UpdateReplicasRequest {
		return &dsdv1.UpdateReplicasRequest{Change: &dsdv1.UpdateReplicasRequest_Leave{Leave: args[0]}}
	})
}

type replicasJSON struct {
	Sites       []string `json:"sites"`
	Transitions uint32   `json:"transitions"`
}

func replicasCmd(g *globals, cmd *cobra.Command, req func(args []string) *dsdv1.UpdateReplicasRequest) *cobra.Command {
	var asJSON bool
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, ctx, done, err := g.dial(cmd.Context())
		if err != nil {
			return err
		}
		defer done()
		resp, err := c.Admin.UpdateReplicas(ctx, req(args))
		if err != nil {
			return err
		}
		return writeReplicas(cmd.OutOrStdout(), resp, asJSON)
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func writeReplicas(w io.Writer, resp *dsdv1.UpdateReplicasResponse, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(replicasJSON{Sites: append([]string{}, resp.GetSites()...), Transitions: resp.GetTransitions()})
	}
	_, err := fmt.Fprintf(w, "ok\nreplica sites: %s\ntransitions pending: %d (dstool info shows them)\n", strings.Join(resp.GetSites(), " "), resp.GetTransitions())
	return err
}
