package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

func newReadCmd(g *globals) *cobra.Command {
	var (
		since  string
		limit  int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "read <topic filter>",
		Short: "Print stored messages that match a topic filter",
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
			msgs, err := c.ReadAll(ctx, args[0], sinceUs, limit)
			if err != nil {
				return err
			}
			return writeMessages(cmd.OutOrStdout(), msgs, asJSON)
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "start: a duration ago (10m), an RFC 3339 time, or microseconds since the epoch (default: the beginning)")
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most this many messages, the earliest first (0 = all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per message per line")
	return cmd
}

// parseSince reads --since as a duration before now, an RFC 3339 time or
// microseconds since the Unix epoch.
func parseSince(s string, now time.Time) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d).UnixMicro(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixMicro(), nil
	}
	if us, err := strconv.ParseInt(s, 10, 64); err == nil && us >= 0 {
		return us, nil
	}
	return 0, fmt.Errorf("--since %q: want a duration (10m), an RFC 3339 time or microseconds", s)
}

// messageJSON is one line of `read --json`. A payload that is valid UTF-8 is
// printed as text in "payload"; any other payload as base64 in "payload_base64".
type messageJSON struct {
	Topic         string            `json:"topic"`
	Payload       *string           `json:"payload,omitempty"`
	PayloadBase64 []byte            `json:"payload_base64,omitempty"`
	QoS           uint32            `json:"qos"`
	Retain        bool              `json:"retain"`
	Publisher     string            `json:"publisher"`
	TimestampUs   int64             `json:"timestamp_us"`
	Key           []byte            `json:"key"`
	UserProps     map[string]string `json:"user_properties,omitempty"`
}

func writeMessages(w io.Writer, msgs []*dsdv1.StoredMessage, asJSON bool) error {
	enc := json.NewEncoder(w)
	for _, sm := range msgs {
		m := sm.GetMessage()
		if !asJSON {
			fmt.Fprintf(w, "%s %s %q\n", formatUs(m.GetTimestampUs()), m.GetTopic(), m.GetPayload())
			continue
		}
		line := messageJSON{Topic: m.GetTopic(), QoS: m.GetQos(), Retain: m.GetRetain(), Publisher: m.GetPublisherClientId(), TimestampUs: m.GetTimestampUs(), Key: sm.GetKey()}
		if p := m.GetPayload(); utf8.Valid(p) {
			s := string(p)
			line.Payload = &s
		} else {
			line.PayloadBase64 = p
		}
		for _, up := range m.GetProperties().GetUserProperties() {
			if line.UserProps == nil {
				line.UserProps = map[string]string{}
			}
			line.UserProps[up.GetKey()] = up.GetValue()
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	return nil
}
