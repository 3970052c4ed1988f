package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

func newSessionsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "sessions",
		Aliases: []string{"session"},
		Short:   "List, show and delete MQTT sessions",
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the sessions of every shard",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, ctx, done, err := g.dialPool(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			w := cmd.OutOrStdout()
			if !asJSON {
				fmt.Fprintf(w, "%-24s %-16s %-6s %-10s %-10s %-20s %-12s %-5s %-7s %s\n",
					"CLIENT", "USERNAME", "SHARD", "STATE", "GUARD", "OWNER", "EXPIRY", "SUBS", "STREAMS", "MISSED")
			}
			write := func(s *dsdv1.SessionSummary) error { return writeSessionSummary(w, s, asJSON) }
			if t := pool.Table(); t.Multi() && t.NShards > 0 {
				// A cluster: each shard's sessions from its leader.
				for sh := range t.NShards {
					if err := pool.ForShard(sh).ListAllSessions(ctx, 500, write, uint32(sh)); err != nil {
						return err
					}
				}
				return nil
			}
			return pool.ForShard(0).ListAllSessions(ctx, 500, write)
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per session per line")
	show := &cobra.Command{
		Use:   "show <client id>",
		Short: "Show a session: record, subscriptions, stream positions, missed count",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, ctx, done, err := g.dialPool(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			res, err := pool.ForClient(args[0]).Sessions().GetSession(ctx, &dsdv1.GetSessionRequest{ClientId: args[0]})
			if err != nil {
				return err
			}
			if asJSON {
				b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(res)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return nil
			}
			writeSession(cmd.OutOrStdout(), res.GetSession(), res.GetShard())
			return nil
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	var guard string
	del := &cobra.Command{
		Use:   "delete <client id>",
		Short: "Delete a session (without --guard: admin)",
		Long: "Delete a session and its state. With --guard the delete is refused unless the guard is the session's " +
			"current one (a gateway's delete); without it, dsd requires the admin role and deletes whatever incarnation exists, " +
			"kicking its connection.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &dsdv1.DeleteSessionRequest{ClientId: args[0]}
			if guard != "" {
				v, err := strconv.ParseUint(guard, 10, 64)
				if err != nil {
					return fmt.Errorf("guard %q: %w", guard, err)
				}
				req.Guard = &v
			}
			pool, ctx, done, err := g.dialPool(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			res, err := pool.ForClient(args[0]).Sessions().DeleteSession(ctx, req)
			if err != nil {
				return err
			}
			if res.GetDeleted() {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted session %q\n", args[0])
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "no session %q\n", args[0])
			}
			return nil
		},
	}
	del.Flags().StringVar(&guard, "guard", "", "only delete this incarnation (its current guard)")
	cmd.AddCommand(list, show, del)
	return cmd
}

// sessionJSON is one line of `sessions list --json`.
type sessionJSON struct {
	ClientID         string `json:"client_id"`
	Username         string `json:"username"`
	Shard            uint32 `json:"shard"`
	Connected        bool   `json:"connected"`
	Guard            uint64 `json:"guard"`
	OwnerGatewayID   string `json:"owner_gateway_id"`
	OwnerEpoch       uint64 `json:"owner_epoch"`
	ProtocolVersion  uint32 `json:"protocol_version"`
	ExpiryIntervalS  uint32 `json:"expiry_interval_s"`
	ConnectedAtUs    int64  `json:"connected_at_us"`
	DisconnectedAtUs int64  `json:"disconnected_at_us"`
	Subscriptions    uint32 `json:"subscriptions"`
	Streams          uint32 `json:"streams"`
	MissedMessages   uint64 `json:"missed_messages"`
}

func writeSessionSummary(w io.Writer, s *dsdv1.SessionSummary, asJSON bool) error {
	r := s.GetRecord()
	if asJSON {
		return json.NewEncoder(w).Encode(sessionJSON{
			ClientID: r.GetClientId(), Username: r.GetUsername(), Shard: s.GetShard(), Connected: r.GetConnected(),
			Guard: r.GetGuard(), OwnerGatewayID: r.GetOwnerGatewayId(), OwnerEpoch: r.GetOwnerEpoch(),
			ProtocolVersion: r.GetProtocolVersion(), ExpiryIntervalS: r.GetExpiryIntervalS(),
			ConnectedAtUs: r.GetConnectedAtUs(), DisconnectedAtUs: r.GetDisconnectedAtUs(),
			Subscriptions: s.GetSubscriptions(), Streams: s.GetStreams(), MissedMessages: r.GetMissedMessages(),
		})
	}
	state := "connected"
	if !r.GetConnected() {
		state = "offline"
	}
	_, err := fmt.Fprintf(w, "%-24s %-16s %-6d %-10s %-10d %-20s %-12s %-5d %-7d %d\n",
		r.GetClientId(), r.GetUsername(), s.GetShard(), state, r.GetGuard(),
		fmt.Sprintf("%s/%d", r.GetOwnerGatewayId(), r.GetOwnerEpoch()), formatExpiry(r.GetExpiryIntervalS()),
		s.GetSubscriptions(), s.GetStreams(), r.GetMissedMessages())
	return err
}

func formatExpiry(s uint32) string {
	if s == 0xFFFFFFFF {
		return "never"
	}
	return strconv.FormatUint(uint64(s), 10) + "s"
}

func writeSession(w io.Writer, s *storagev1.Session, shard uint32) {
	r := s.GetRecord()
	fmt.Fprintf(w, "client id:        %s\n", r.GetClientId())
	fmt.Fprintf(w, "username:         %s\n", r.GetUsername())
	fmt.Fprintf(w, "shard:            %d\n", shard)
	fmt.Fprintf(w, "protocol:         %d\n", r.GetProtocolVersion())
	fmt.Fprintf(w, "connected:        %v (owner %s epoch %d, guard %d)\n", r.GetConnected(), r.GetOwnerGatewayId(), r.GetOwnerEpoch(), r.GetGuard())
	fmt.Fprintf(w, "created at:       %s\n", formatUs(r.GetCreatedAtUs()))
	fmt.Fprintf(w, "connected at:     %s\n", formatUs(r.GetConnectedAtUs()))
	fmt.Fprintf(w, "disconnected at:  %s (abnormal %v)\n", formatUs(r.GetDisconnectedAtUs()), r.GetAbnormalDisconnect())
	fmt.Fprintf(w, "expiry:           %s\n", formatExpiry(r.GetExpiryIntervalS()))
	if wl := r.GetWill(); wl != nil {
		fmt.Fprintf(w, "will:             %s (QoS %d, delay %ds, due %s)\n", wl.GetMessage().GetTopic(), wl.GetMessage().GetQos(), wl.GetDelayIntervalS(), formatUs(r.GetWillAtUs()))
	}
	q := r.GetSeqnos()
	fmt.Fprintf(w, "qos1 seqnos:      committed %d dup %d next %d\n", q.GetCommittedQos1(), q.GetDupQos1(), q.GetNextQos1())
	fmt.Fprintf(w, "qos2 seqnos:      committed %d dup %d rec %d next %d\n", q.GetCommittedQos2(), q.GetDupQos2(), q.GetRecQos2(), q.GetNextQos2())
	fmt.Fprintf(w, "missed messages:  %d\n", r.GetMissedMessages())
	fmt.Fprintf(w, "held qos2 ids:    %v\n", s.GetHeldQos2Ids())
	states := map[uint64]*storagev1.SubscriptionState{}
	for _, st := range s.GetStates() {
		states[st.GetId()] = st
	}
	fmt.Fprintf(w, "subscriptions:    %d\n", len(s.GetSubscriptions()))
	for _, sub := range s.GetSubscriptions() {
		st := states[sub.GetCurrentState()]
		retired := ""
		if sub.GetRetired() {
			retired = " retired: unsubscribed, its messages in flight not yet acknowledged"
		}
		fmt.Fprintf(w, "  %d %s qos %d no_local %v rap %v rh %d (state %d) start %v generations %v%s\n",
			sub.GetId(), sub.GetTopicFilter(), st.GetQos(), st.GetNoLocal(), st.GetRetainAsPublished(), st.GetRetainHandling(),
			sub.GetCurrentState(), sub.GetStartUs(), sub.GetGenerations(), retired)
	}
	fmt.Fprintf(w, "streams:          %d\n", len(s.GetStreams()))
	for _, ring := range s.GetStreams() {
		k := ring.GetKey()
		fmt.Fprintf(w, "  sub %d shard %d gen %d static %x: %d batches, end of stream %v\n",
			k.GetSubscriptionId(), k.GetShard(), k.GetGeneration(), k.GetStaticIndex(), len(ring.GetBatches()), ring.GetEndOfStream())
		for _, b := range ring.GetBatches() {
			fmt.Fprintf(w, "    count %d qos1 %d..%d qos2 %d..%d state %d\n", b.GetCount(),
				b.GetFirstSeqnoQos1(), b.GetLastSeqnoQos1(), b.GetFirstSeqnoQos2(), b.GetLastSeqnoQos2(), b.GetSubState())
		}
	}
	fmt.Fprintf(w, "retained batches: %d\n", len(s.GetRetained()))
}
