package storage

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// TestSessionDataDriven runs the session scripts in session_testdata (not
// under testdata, whose walker runs the engine scripts). Commands:
//
//	open-session client= [user=] [gw=] [epoch=] [expiry=] [clean] [cross]
//	commit client= guard=   (input: one change a line, see parseCommitLine)
//	disconnect client= guard= [abnormal] [expiry=]
//	delete client= [guard=]
//	release client= guard= id=
//	store client= guard= seq= ids=7,0,...   (one QoS 2 message per id)
//	show client=     | keys | revoked | sweep | reopen | now advance=
func TestSessionDataDriven(t *testing.T) {
	datadriven.Walk(t, "session_testdata", func(t *testing.T, path string) {
		e := newSessEnv(t, 2)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			out, err := sessionDD(t, e, d)
			if err != nil {
				return "error: " + err.Error() + "\n"
			}
			return out
		})
	})
}

func sessionDD(t *testing.T, e *sessEnv, d *datadriven.TestData) (string, error) {
	ctx := context.Background()
	var cid string
	d.MaybeScanArgs(t, "client", &cid)
	var guard uint64
	d.MaybeScanArgs(t, "guard", &guard)
	switch d.Cmd {
	case "now":
		if v, ok := durArg(t, d, "advance"); ok {
			e.clock.Advance(v)
		}
		return rel(e.clock.Now().UnixMicro()) + "\n", nil
	case "open-session":
		req := OpenSessionRequest{ClientID: cid, ProtocolVersion: 5, GatewayID: "gw", GatewayEpoch: 1,
			CleanStart: d.HasArg("clean"), AllowCrossIdentityTakeover: d.HasArg("cross")}
		d.MaybeScanArgs(t, "user", &req.Username)
		d.MaybeScanArgs(t, "gw", &req.GatewayID)
		d.MaybeScanArgs(t, "epoch", &req.GatewayEpoch)
		d.MaybeScanArgs(t, "expiry", &req.ExpiryIntervalS)
		if d.HasArg("will") {
			req.Will = &storagev1.Will{Message: msg("will/"+cid, "bye"), DelayIntervalS: 10}
		}
		res, err := e.db.OpenSession(ctx, req)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("guard %d present %v taken over %v\n", res.Guard, res.SessionPresent, res.TakenOver), nil
	case "commit":
		c := &storagev1.SessionCommit{ClientId: cid, Guard: guard}
		for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
			if err := parseCommitLine(c, strings.Fields(line)); err != nil {
				d.Fatalf(t, "%s: %v", line, err)
			}
		}
		if err := e.db.CommitSession(ctx, c); err != nil {
			return "", err
		}
		return "ok\n", nil
	case "disconnect":
		req := DisconnectRequest{ClientID: cid, Guard: guard, Abnormal: d.HasArg("abnormal")}
		if d.HasArg("expiry") {
			var v uint32
			d.ScanArgs(t, "expiry", &v)
			req.ExpiryIntervalS = &v
		}
		ended, err := e.db.Disconnect(ctx, req)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("ended %v\n", ended), nil
	case "delete":
		var g *uint64
		if d.HasArg("guard") {
			g = &guard
		}
		del, err := e.db.DeleteSession(ctx, cid, g)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("deleted %v\n", del), nil
	case "release":
		var id uint16
		d.ScanArgs(t, "id", &id)
		rel, err := e.db.Release(ctx, cid, guard, id)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("released %v\n", rel), nil
	case "store":
		var seq uint64
		var ids string
		d.ScanArgs(t, "seq", &seq)
		d.ScanArgs(t, "ids", &ids)
		p := &Producer{ClientID: cid, Epoch: guard, FirstSeq: seq}
		var msgs []*storagev1.Message
		for _, f := range strings.Split(ids, ",") {
			id, _ := strconv.ParseUint(f, 10, 16)
			m := msg("q/"+cid, f)
			if id != 0 {
				m.Qos = 2
			}
			p.QoS2PacketIDs = append(p.QoS2PacketIDs, uint16(id))
			msgs = append(msgs, m)
		}
		res, err := e.db.Store(ctx, cid, msgs, p)
		if err != nil {
			return "", err
		}
		if res.Duplicate {
			return "duplicate\n", nil
		}
		var b strings.Builder
		for i, ts := range res.TimestampsUs {
			if ts == 0 {
				fmt.Fprintf(&b, "%d: held\n", i)
			} else {
				fmt.Fprintf(&b, "%d: stored\n", i)
			}
		}
		return b.String(), nil
	case "show":
		s, shard, ok := e.db.GetSession(cid)
		if !ok {
			return "absent\n", nil
		}
		return showSession(s, shard), nil
	case "keys":
		var b strings.Builder
		for shard := range e.db.NShards() {
			for _, tag := range []byte{tagSessionGuard, tagSession} {
				p := shardPrefix(shard, tag)
				it, err := e.db.pdb.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
				if err != nil {
					return "", err
				}
				for ok := it.First(); ok; ok = it.Next() {
					fmt.Fprintln(&b, prettyKey(it.Key()))
				}
				if err := it.Close(); err != nil {
					return "", err
				}
			}
		}
		return b.String(), nil
	case "revoked":
		var b strings.Builder
		for _, r := range e.takeRevoked() {
			fmt.Fprintf(&b, "%s guard %d owner %s/%d connected %v: %s\n", r.ClientID, r.Guard, r.GatewayID, r.GatewayEpoch, r.Connected, r.Reason)
		}
		return b.String(), nil
	case "sweep":
		n, err := e.db.SweepSessions(ctx)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("swept %d\n", n), nil
	case "reopen":
		e.reopen()
		return "ok\n", nil
	}
	d.Fatalf(t, "unknown command %s", d.Cmd)
	return "", nil
}

// parseCommitLine adds one change to a commit:
//
//	state <id> sub=<id> filter=<f> qos=<q>
//	sub <id> filter=<f> state=<id>
//	del-sub <id>
//	stream <sub> <shard> <gen> <static hex> count=<n> state=<id>
//	del-stream <sub> <shard> <gen> <static hex>
//	seqnos <committed1> <dup1> <next1> <committed2> <dup2> <rec2> <next2>
//	missed <n> | last-id <n>
func parseCommitLine(c *storagev1.SessionCommit, f []string) error {
	kv := map[string]string{}
	var pos []string
	for _, w := range f[1:] {
		if k, v, ok := strings.Cut(w, "="); ok {
			kv[k] = v
		} else {
			pos = append(pos, w)
		}
	}
	num := func(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
	streamKey := func() *storagev1.StreamKey {
		static, _ := hex.DecodeString(pos[3])
		return &storagev1.StreamKey{SubscriptionId: num(pos[0]), Shard: uint32(num(pos[1])), Generation: num(pos[2]), StaticIndex: static}
	}
	switch f[0] {
	case "state":
		c.PutStates = append(c.PutStates, &storagev1.SubscriptionState{Id: num(pos[0]), SubscriptionId: num(kv["sub"]), TopicFilter: kv["filter"], Qos: uint32(num(kv["qos"]))})
	case "sub":
		c.PutSubscriptions = append(c.PutSubscriptions, &storagev1.Subscription{Id: num(pos[0]), TopicFilter: kv["filter"], CurrentState: num(kv["state"])})
	case "del-sub":
		c.DeleteSubscriptions = append(c.DeleteSubscriptions, num(pos[0]))
	case "stream":
		c.PutStreams = append(c.PutStreams, &storagev1.StreamRing{Key: streamKey(), Batches: []*storagev1.BatchRecord{{Count: uint32(num(kv["count"])), SubState: num(kv["state"])}}})
	case "del-stream":
		c.DeleteStreams = append(c.DeleteStreams, streamKey())
	case "seqnos":
		c.Seqnos = &storagev1.SeqnoTracks{CommittedQos1: num(pos[0]), DupQos1: num(pos[1]), NextQos1: num(pos[2]),
			CommittedQos2: num(pos[3]), DupQos2: num(pos[4]), RecQos2: num(pos[5]), NextQos2: num(pos[6])}
	case "missed":
		v := num(pos[0])
		c.MissedMessages = &v
	case "last-id":
		v := num(pos[0])
		c.LastId = &v
	default:
		return fmt.Errorf("unknown change %q", f[0])
	}
	return nil
}

func showSession(s *storagev1.Session, shard int) string {
	var b strings.Builder
	r := s.Record
	state := "connected"
	if !r.Connected {
		state = fmt.Sprintf("disconnected at %s (abnormal %v)", rel(r.DisconnectedAtUs), r.AbnormalDisconnect)
	}
	fmt.Fprintf(&b, "%s shard %d user %q guard %d owner %s/%d expiry %d (connect %d): %s\n", r.ClientId, shard, r.Username, r.Guard,
		r.OwnerGatewayId, r.OwnerEpoch, r.ExpiryIntervalS, r.ConnectExpiryIntervalS, state)
	if r.Will != nil {
		fmt.Fprintf(&b, "will %s delay %ds due %s\n", r.Will.Message.Topic, r.Will.DelayIntervalS, rel(r.WillAtUs))
	}
	if q := r.Seqnos; q != nil {
		fmt.Fprintf(&b, "seqnos qos1 %d/%d/%d qos2 %d/%d/%d/%d\n", q.CommittedQos1, q.DupQos1, q.NextQos1, q.CommittedQos2, q.DupQos2, q.RecQos2, q.NextQos2)
	}
	fmt.Fprintf(&b, "missed %d last id %d held %v\n", r.MissedMessages, r.LastId, s.HeldQos2Ids)
	for _, v := range s.States {
		fmt.Fprintf(&b, "state %d: sub %d %s qos %d\n", v.Id, v.SubscriptionId, v.TopicFilter, v.Qos)
	}
	for _, v := range s.Subscriptions {
		fmt.Fprintf(&b, "sub %d: %s state %d\n", v.Id, v.TopicFilter, v.CurrentState)
	}
	for _, v := range s.Streams {
		fmt.Fprintf(&b, "stream sub %d shard %d gen %d static %x: %d batches\n", v.Key.SubscriptionId, v.Key.Shard, v.Key.Generation, v.Key.StaticIndex, len(v.Batches))
	}
	return b.String()
}
