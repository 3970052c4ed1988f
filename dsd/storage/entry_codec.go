package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// The log entry of a replicated shard (replication.go):
//
//	version (1 byte, 1) | origin (8, big-endian) | proposal id (8) | kind (1) | now_us (varint) | fields
//
// origin is the proposing DB's random id (per open) and the proposal id
// its counter: together they find the proposer's waiting requests. now_us
// is the leader's clock reading when it built the command; apply derives
// every timestamp from it and the shard's state, so every replica writes
// the same bytes. The fields per kind:
//
//	batch:    n_stores, then per Store: client id (bytes), producer flag (varint 0/1)
//	          [epoch, first_seq, n_qos2_ids, ids...], n_msgs, then each message's encoding (bytes)
//	tick, session_gc, fire_wills: none
//	add_generation: layout type (bytes), bits_per_topic_level, epoch_bits, topic_index_bytes,
//	          max_trie_states, n_thresholds, thresholds...
//	drop_generation: generation id
//	retained_delete: topic (bytes), above_us (zigzag)
//	retained_expire: none
//	session, will and shared-subscription commands: entry_codec_session.go
//
// Varints and bytes are protobuf's (protowire). The format is on disk (the
// raft log) and on the wire between sites: a change takes a new version.
const entryVersion1 byte = 1

const (
	entryBatch byte = iota + 1
	entryTick
	entryAddGeneration
	entryDropGeneration
	entrySessionGC
	entryFireWills
)

// entryHeaderLen is version, origin and proposal id.
const entryHeaderLen = 1 + 8 + 8

// appendEntry encodes cmd as a log entry. Commands this slice does not
// replicate are ErrNotReplicated.
func appendEntry(b []byte, origin, id uint64, cmd command) ([]byte, error) {
	b = append(b, entryVersion1)
	b = binary.BigEndian.AppendUint64(b, origin)
	b = binary.BigEndian.AppendUint64(b, id)
	w := &entryWriter{b: b}
	switch c := cmd.(type) {
	case cmdBatch:
		w.b = appendKindNow(w.b, entryBatch, c.nowUs)
		w.varint(uint64(len(c.stores)))
		for _, st := range c.stores {
			w.str(st.clientID)
			w.bool(st.producer != nil)
			if p := st.producer; p != nil {
				w.varint(p.Epoch)
				w.varint(p.FirstSeq)
				w.varint(uint64(len(p.QoS2PacketIDs)))
				for _, id := range p.QoS2PacketIDs {
					w.varint(uint64(id))
				}
			}
			w.varint(uint64(len(st.msgs)))
			for _, m := range st.msgs {
				w.bytes(m.Encoded)
			}
		}
	case cmdTick:
		w.b = appendKindNow(w.b, entryTick, c.nowUs)
	case cmdSessionGC:
		w.b = appendKindNow(w.b, entrySessionGC, c.nowUs)
	case cmdFireWills:
		w.b = appendKindNow(w.b, entryFireWills, c.nowUs)
	case cmdAddGeneration:
		w.b = appendKindNow(w.b, entryAddGeneration, c.nowUs)
		l := c.layout
		w.str(l.Type)
		for _, v := range []int{l.BitsPerTopicLevel, l.EpochBits, l.TopicIndexBytes, l.MaxTrieStates, len(l.WildcardThresholds)} {
			w.varint(uint64(v))
		}
		for _, t := range l.WildcardThresholds {
			w.varint(uint64(t))
		}
	case cmdDropGeneration:
		w.b = appendKindNow(w.b, entryDropGeneration, c.nowUs)
		w.varint(c.id)
	case cmdRetainedDelete:
		w.b = appendKindNow(w.b, entryRetainedDelete, c.nowUs)
		w.str(c.topic)
		w.int(c.aboveUs)
	case cmdRetainedExpire:
		w.b = appendKindNow(w.b, entryRetainedExpire, c.nowUs)
	default:
		b, ok, err := appendSessionEntry(w.b, cmd)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w (%T)", ErrNotReplicated, cmd)
		}
		return b, nil
	}
	return w.b, nil
}

func appendKindNow(b []byte, kind byte, nowUs int64) []byte {
	return protowire.AppendVarint(append(b, kind), protowire.EncodeZigZag(nowUs))
}

var errShortEntry = errors.New("truncated entry")

// entryReader consumes an entry's fields; the first error sticks.
type entryReader struct {
	b   []byte
	err error
}

func (r *entryReader) varint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := protowire.ConsumeVarint(r.b)
	if n < 0 {
		r.err = errShortEntry
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a count that each counted item needs at least one byte
// for, so a corrupt count cannot make a huge allocation.
func (r *entryReader) count() int {
	v := r.varint()
	if r.err == nil && v > uint64(len(r.b)) {
		r.err = fmt.Errorf("count %d exceeds the entry", v)
		return 0
	}
	return int(v)
}

// small reads a varint that must fit an int of at most max.
func (r *entryReader) small(max uint64) int {
	v := r.varint()
	if r.err == nil && v > max {
		r.err = fmt.Errorf("value %d out of range", v)
		return 0
	}
	return int(v)
}

func (r *entryReader) bytes() []byte {
	if r.err != nil {
		return nil
	}
	v, n := protowire.ConsumeBytes(r.b)
	if n < 0 {
		r.err = errShortEntry
		return nil
	}
	r.b = r.b[n:]
	return v
}

// decodeEntry decodes a log entry. The command's messages alias data.
func decodeEntry(data []byte) (origin, id uint64, cmd command, err error) {
	if len(data) < entryHeaderLen+1 {
		return 0, 0, nil, errShortEntry
	}
	if data[0] != entryVersion1 {
		return 0, 0, nil, fmt.Errorf("unknown entry version %d", data[0])
	}
	origin = binary.BigEndian.Uint64(data[1:9])
	id = binary.BigEndian.Uint64(data[9:17])
	kind := data[entryHeaderLen]
	r := &entryReader{b: data[entryHeaderLen+1:]}
	nowUs := r.int()
	switch kind {
	case entryBatch:
		cmd = decodeBatch(r, nowUs)
	case entryTick:
		cmd = cmdTick{nowUs: nowUs}
	case entrySessionGC:
		cmd = cmdSessionGC{nowUs: nowUs}
	case entryFireWills:
		cmd = cmdFireWills{nowUs: nowUs}
	case entryAddGeneration:
		l := LayoutConfig{Type: r.str()}
		l.BitsPerTopicLevel = r.small(64)
		l.EpochBits = r.small(64)
		l.TopicIndexBytes = r.small(8)
		l.MaxTrieStates = r.small(math.MaxInt32)
		if n := r.count(); r.err == nil {
			l.WildcardThresholds = make([]int, n)
			for i := range l.WildcardThresholds {
				l.WildcardThresholds[i] = r.small(math.MaxInt32)
			}
		}
		cmd = cmdAddGeneration{nowUs: nowUs, layout: l}
	case entryDropGeneration:
		cmd = cmdDropGeneration{nowUs: nowUs, id: r.varint()}
	case entryRetainedDelete:
		cmd = cmdRetainedDelete{nowUs: nowUs, topic: r.str(), aboveUs: r.int()}
	case entryRetainedExpire:
		cmd = cmdRetainedExpire{nowUs: nowUs}
	default:
		var ok bool
		if cmd, ok = decodeSessionEntry(r, kind, nowUs); !ok {
			return 0, 0, nil, fmt.Errorf("unknown entry kind %d", kind)
		}
	}
	if r.err == nil && len(r.b) > 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return 0, 0, nil, r.err
	}
	return origin, id, cmd, nil
}

func decodeBatch(r *entryReader, nowUs int64) command {
	c := cmdBatch{nowUs: nowUs}
	n := r.count()
	if r.err != nil {
		return c
	}
	c.stores = make([]*storeReq, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		sr := &storeReq{clientID: r.str()}
		if r.bool() {
			p := &Producer{ClientID: sr.clientID, Epoch: r.varint(), FirstSeq: r.varint()}
			if k := r.count(); r.err == nil && k > 0 {
				p.QoS2PacketIDs = make([]uint16, k)
				for j := range p.QoS2PacketIDs {
					p.QoS2PacketIDs[j] = uint16(r.small(math.MaxUint16))
				}
			}
			sr.producer = p
		}
		m := r.count()
		if r.err != nil {
			break
		}
		sr.msgs = make([]IngestMessage, m)
		for j := range sr.msgs {
			b := r.bytes()
			if r.err != nil {
				break
			}
			msg, err := ParseIngestMessage(b)
			if err != nil {
				r.err = err
				break
			}
			sr.msgs[j] = msg
		}
		c.stores = append(c.stores, sr)
	}
	return c
}
