package storage

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// Session, will and shared-subscription commands in a log entry
// (entry_codec.go has the framing). The fields per kind, in order:
//
//	open_session:   client id, username, protocol version, clean start, expiry, will (proto bytes, empty: none),
//	                gateway id, gateway epoch, cross-identity takeover
//	commit_session: SessionCommit (proto bytes)
//	disconnect:     client id, guard, abnormal, expiry flag [expiry], watermark (zigzag)
//	delete_session: client id, guard flag [guard]
//	release:        client id, guard, packet id
//	end_gateway_epoch: gateway id, epoch, watermark (zigzag)
//	will_retained_done: n, timestamps (zigzag)...
//	shared_grant:   filter, SharedGrant (proto bytes)
//	shared_ack:     filter, member, grant id
//	shared_member_down: member, guard, final, resumed, keep_qos2, stream flag [shard, generation,
//	                static index, structure], held, filters, recorded, groups, done (each a counted list)
//	shared_forget:  filter
//	shared_stream_gone: filter, shard, generation, static index, structure
//
// Booleans are varints 0 or 1. The commands without a clock reading of
// their own (the shared ones) carry now_us 0.
const (
	entryOpenSession byte = iota + entryFireWills + 1
	entryCommitSession
	entryDisconnect
	entryDeleteSession
	entryRelease
	entryEndGatewayEpoch
	entryWillRetainedDone
	entrySharedGrant
	entrySharedAck
	entrySharedMemberDown
	entrySharedForget
	entrySharedStreamGone
	// The retained commands (entry_codec.go).
	entryRetainedDelete
	entryRetainedExpire

	// entryKindEnd is one past the last kind (a new kind goes above it):
	// the kinds are 1 to entryKindEnd-1.
	entryKindEnd
)

// entryWriter appends fields.
type entryWriter struct{ b []byte }

func (w *entryWriter) varint(v uint64) { w.b = protowire.AppendVarint(w.b, v) }
func (w *entryWriter) int(v int64)     { w.varint(protowire.EncodeZigZag(v)) }
func (w *entryWriter) str(s string)    { w.b = protowire.AppendString(w.b, s) }
func (w *entryWriter) bytes(b []byte)  { w.b = protowire.AppendBytes(w.b, b) }

func (w *entryWriter) bool(v bool) {
	if v {
		w.varint(1)
	} else {
		w.varint(0)
	}
}

func (w *entryWriter) proto(m proto.Message) error {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return err
	}
	w.bytes(b)
	return nil
}

func (w *entryWriter) uints(v []uint64) {
	w.varint(uint64(len(v)))
	for _, x := range v {
		w.varint(x)
	}
}

func (w *entryWriter) strs(v []string) {
	w.varint(uint64(len(v)))
	for _, x := range v {
		w.str(x)
	}
}

// appendSessionEntry encodes a session, will or shared command; ok is
// false for another command.
func appendSessionEntry(b []byte, cmd command) (_ []byte, ok bool, err error) {
	w := &entryWriter{b: b}
	switch c := cmd.(type) {
	case cmdOpenSession:
		w.b = appendKindNow(w.b, entryOpenSession, c.nowUs)
		r := c.req
		w.str(r.ClientID)
		w.str(r.Username)
		w.varint(uint64(r.ProtocolVersion))
		w.bool(r.CleanStart)
		w.varint(uint64(r.ExpiryIntervalS))
		if r.Will != nil {
			err = w.proto(r.Will)
		} else {
			w.bytes(nil)
		}
		w.str(r.GatewayID)
		w.varint(r.GatewayEpoch)
		w.bool(r.AllowCrossIdentityTakeover)
	case cmdCommitSession:
		w.b = appendKindNow(w.b, entryCommitSession, c.nowUs)
		err = w.proto(c.commit)
	case cmdDisconnect:
		w.b = appendKindNow(w.b, entryDisconnect, c.nowUs)
		r := c.req
		w.str(r.ClientID)
		w.varint(r.Guard)
		w.bool(r.Abnormal)
		w.bool(r.ExpiryIntervalS != nil)
		if r.ExpiryIntervalS != nil {
			w.varint(uint64(*r.ExpiryIntervalS))
		}
		w.int(r.watermarkUs)
	case cmdDeleteSession:
		w.b = appendKindNow(w.b, entryDeleteSession, c.nowUs)
		w.str(c.clientID)
		w.bool(c.guard != nil)
		if c.guard != nil {
			w.varint(*c.guard)
		}
	case cmdRelease:
		w.b = appendKindNow(w.b, entryRelease, c.nowUs)
		w.str(c.clientID)
		w.varint(c.guard)
		w.varint(uint64(c.packetID))
	case cmdEndGatewayEpoch:
		w.b = appendKindNow(w.b, entryEndGatewayEpoch, c.nowUs)
		w.str(c.gatewayID)
		w.varint(c.epoch)
		w.int(c.watermarkUs)
	case cmdWillRetainedDone:
		w.b = appendKindNow(w.b, entryWillRetainedDone, c.nowUs)
		w.varint(uint64(len(c.ts)))
		for _, ts := range c.ts {
			w.int(ts)
		}
	case cmdSharedGrant:
		w.b = appendKindNow(w.b, entrySharedGrant, 0)
		w.str(c.filter)
		err = w.proto(c.grant)
	case cmdSharedAck:
		w.b = appendKindNow(w.b, entrySharedAck, 0)
		w.str(c.filter)
		w.str(c.member)
		w.varint(c.id)
	case cmdSharedMemberDown:
		w.b = appendKindNow(w.b, entrySharedMemberDown, 0)
		d := c.down
		w.str(d.Member)
		w.varint(d.Guard)
		w.bool(d.Final)
		w.bool(d.Resumed)
		w.bool(d.KeepQoS2)
		w.bool(d.Stream != nil)
		if s := d.Stream; s != nil {
			w.varint(uint64(s.Shard))
			w.varint(s.Generation)
			w.bytes(s.StaticIndex)
			w.str(s.Structure)
		}
		w.uints(d.Held)
		w.strs(d.Filters)
		w.uints(d.Recorded)
		w.strs(d.Groups)
		w.uints(d.Done)
	case cmdSharedForget:
		w.b = appendKindNow(w.b, entrySharedForget, 0)
		w.str(c.filter)
	case cmdSharedStreamGone:
		w.b = appendKindNow(w.b, entrySharedStreamGone, 0)
		w.str(c.filter)
		w.varint(uint64(c.stream.Shard))
		w.varint(c.stream.Generation)
		w.bytes(c.stream.StaticIndex)
		w.str(c.stream.Structure)
	default:
		return b, false, nil
	}
	return w.b, true, err
}

func (r *entryReader) str() string { return string(r.bytes()) }

func (r *entryReader) bool() bool { return r.small(1) == 1 }

func (r *entryReader) int() int64 { return protowire.DecodeZigZag(r.varint()) }

func (r *entryReader) proto(m proto.Message) {
	b := r.bytes()
	if r.err == nil {
		r.err = proto.Unmarshal(b, m)
	}
}

func (r *entryReader) uints() []uint64 {
	n := r.count()
	if r.err != nil || n == 0 {
		return nil
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = r.varint()
	}
	return out
}

func (r *entryReader) strs() []string {
	n := r.count()
	if r.err != nil || n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.str()
	}
	return out
}

// decodeSessionEntry decodes the fields of a session, will or shared
// command; ok is false for another kind.
func decodeSessionEntry(r *entryReader, kind byte, nowUs int64) (command, bool) {
	switch kind {
	case entryOpenSession:
		req := OpenSessionRequest{ClientID: r.str(), Username: r.str(), ProtocolVersion: uint32(r.small(math.MaxUint32)),
			CleanStart: r.bool(), ExpiryIntervalS: uint32(r.small(math.MaxUint32))}
		if will := r.bytes(); r.err == nil && len(will) > 0 {
			req.Will = &storagev1.Will{}
			r.err = proto.Unmarshal(will, req.Will)
		}
		req.GatewayID, req.GatewayEpoch, req.AllowCrossIdentityTakeover = r.str(), r.varint(), r.bool()
		return cmdOpenSession{nowUs: nowUs, req: req}, true
	case entryCommitSession:
		c := &storagev1.SessionCommit{}
		r.proto(c)
		return cmdCommitSession{nowUs: nowUs, commit: c}, true
	case entryDisconnect:
		req := DisconnectRequest{ClientID: r.str(), Guard: r.varint(), Abnormal: r.bool()}
		if r.bool() {
			e := uint32(r.small(math.MaxUint32))
			req.ExpiryIntervalS = &e
		}
		req.watermarkUs = r.int()
		return cmdDisconnect{nowUs: nowUs, req: req}, true
	case entryDeleteSession:
		c := cmdDeleteSession{nowUs: nowUs, clientID: r.str()}
		if r.bool() {
			g := r.varint()
			c.guard = &g
		}
		return c, true
	case entryRelease:
		return cmdRelease{nowUs: nowUs, clientID: r.str(), guard: r.varint(), packetID: uint16(r.small(math.MaxUint16))}, true
	case entryEndGatewayEpoch:
		return cmdEndGatewayEpoch{nowUs: nowUs, gatewayID: r.str(), epoch: r.varint(), watermarkUs: r.int()}, true
	case entryWillRetainedDone:
		c := cmdWillRetainedDone{nowUs: nowUs}
		if n := r.count(); r.err == nil && n > 0 {
			c.ts = make([]int64, n)
			for i := range c.ts {
				c.ts[i] = r.int()
			}
		}
		return c, true
	case entrySharedGrant:
		c := cmdSharedGrant{filter: r.str(), grant: &storagev1.SharedGrant{}}
		r.proto(c.grant)
		return c, true
	case entrySharedAck:
		return cmdSharedAck{filter: r.str(), member: r.str(), id: r.varint()}, true
	case entrySharedMemberDown:
		d := SharedDown{Member: r.str(), Guard: r.varint(), Final: r.bool(), Resumed: r.bool(), KeepQoS2: r.bool()}
		if r.bool() {
			d.Stream = &Stream{Shard: r.small(math.MaxUint16), Generation: r.varint(), StaticIndex: r.bytes(), Structure: r.str()}
		}
		d.Held, d.Filters, d.Recorded, d.Groups, d.Done = r.uints(), r.strs(), r.uints(), r.strs(), r.uints()
		return cmdSharedMemberDown{down: d}, true
	case entrySharedForget:
		return cmdSharedForget{filter: r.str()}, true
	case entrySharedStreamGone:
		c := cmdSharedStreamGone{filter: r.str()}
		c.stream = Stream{Shard: r.small(math.MaxUint16), Generation: r.varint(), StaticIndex: r.bytes(), Structure: r.str()}
		return c, true
	}
	return nil, false
}
