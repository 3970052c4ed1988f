package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// retainedJSON is one line of `retained list --json`. A payload that is valid
// UTF-8 is printed as text in "payload"; any other payload as base64 in
// "payload_base64".
type retainedJSON struct {
	Topic         string            `json:"topic"`
	Payload       *string           `json:"payload,omitempty"`
	PayloadBase64 []byte            `json:"payload_base64,omitempty"`
	QoS           uint32            `json:"qos"`
	Publisher     string            `json:"publisher"`
	TimestampUs   int64             `json:"timestamp_us"`
	ExpiresAtUs   int64             `json:"expires_at_us,omitempty"`
	ContentType   string            `json:"content_type,omitempty"`
	UserProps     map[string]string `json:"user_properties,omitempty"`
}

func newRetainedCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "retained",
		Short: "List and delete retained messages",
	}
	cmd.AddCommand(newRetainedListCmd(g), newRetainedDeleteCmd(g))
	return cmd
}

// errEnough stops a listing at --limit.
var errEnough = errors.New("enough")

func newRetainedListCmd(g *globals) *cobra.Command {
	var (
		limit  int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list [topic filter]",
		Short: "Print the retained messages whose topics match a filter (default #), in topic order",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			filter := "#"
			if len(args) == 1 {
				filter = args[0]
			}
			if limit < 0 {
				return fmt.Errorf("--limit %d: want 0 (all) or more", limit)
			}
			pool, ctx, done, err := g.dialPool(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			w := cmd.OutOrStdout()
			enc := json.NewEncoder(w)
			page := 1000
			if limit > 0 {
				page = min(limit, page)
			}
			n := 0
			match := pool.ForShard(0).MatchRetained
			if sources := pool.RetainedSources(); sources != nil {
				match = func(ctx context.Context, filter string, page int, fn func(*storagev1.Message) error) error {
					return client.MatchRetainedMerged(ctx, sources, filter, page, fn)
				}
			}
			err = match(ctx, filter, page, func(m *storagev1.Message) error {
				if limit > 0 && n >= limit {
					return errEnough
				}
				n++
				if !asJSON {
					fmt.Fprintf(w, "%s %s %q\n", formatUs(m.GetTimestampUs()), m.GetTopic(), m.GetPayload())
					return nil
				}
				return enc.Encode(retainedLine(m))
			})
			if errors.Is(err, errEnough) {
				return nil
			}
			return err
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most this many messages (0 = all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per message per line")
	return cmd
}

func retainedLine(m *storagev1.Message) retainedJSON {
	line := retainedJSON{Topic: m.GetTopic(), QoS: m.GetQos(), Publisher: m.GetPublisherClientId(), TimestampUs: m.GetTimestampUs()}
	if p := m.GetPayload(); utf8.Valid(p) {
		s := string(p)
		line.Payload = &s
	} else {
		line.PayloadBase64 = p
	}
	props := m.GetProperties()
	if props != nil && props.MessageExpiryInterval != nil {
		line.ExpiresAtUs = m.GetTimestampUs() + int64(props.GetMessageExpiryInterval())*int64(time.Second/time.Microsecond)
	}
	line.ContentType = props.GetContentType()
	for _, up := range props.GetUserProperties() {
		if line.UserProps == nil {
			line.UserProps = map[string]string{}
		}
		line.UserProps[up.GetKey()] = up.GetValue()
	}
	return line
}

func newRetainedDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete <topic>",
		Short: "Delete the retained message of a topic (admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, ctx, done, err := g.dialPool(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			req := &dsdv1.DeleteRetainedRequest{Topic: args[0]}
			if sources := pool.RetainedSources(); sources != nil {
				// A cluster: read the topic's record from every shard's
				// leader, then have the leader of the topic's shard write
				// the tombstone above it.
				rec, err := client.RetainedRecordMerged(ctx, sources, args[0])
				if err != nil {
					return err
				}
				if rec.GetMessage() == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%q has no retained message\n", args[0])
					return nil
				}
				req.AboveUs = rec.GetTimestampUs()
			}
			// The leader of the topic's shard (the one site, alone).
			res, err := pool.ForClient(args[0]).Retained().DeleteRetained(ctx, req)
			if err != nil {
				return err
			}
			if res.GetDeleted() {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted the retained message of %q\n", args[0])
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%q has no retained message\n", args[0])
			}
			return nil
		},
	}
}
