package storage

import (
	"encoding/binary"
	"fmt"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// Sub-keyspaces of a session (after S|09|len(cid)|cid).
const (
	subSessionRecord   byte = 0x00 // -> SessionRecord
	subSessionSub      byte = 0x01 // | subscription id (8) -> Subscription
	subSessionState    byte = 0x02 // | state id (8) -> SubscriptionState
	subSessionStream   byte = 0x03 // | sub id (8) | shard (2) | gen (8) | static -> StreamRing
	subSessionRetained byte = 0x04 // | sub id (8) | batch id (8) -> RetainedBatch
)

func sessionGuardKey(shard int) []byte { return shardPrefix(shard, tagSessionGuard) }

// sessionPrefix is S|09|len(cid)|cid: everything a session owns. The length
// keeps the prefix of one client id from being the prefix of another's.
func sessionPrefix(shard int, clientID string) []byte {
	k := binary.BigEndian.AppendUint16(shardPrefix(shard, tagSession), uint16(len(clientID)))
	return append(k, clientID...)
}

func sessionKey(shard int, clientID string, sub byte, suffix []byte) []byte {
	return append(append(sessionPrefix(shard, clientID), sub), suffix...)
}

func idSuffix(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// streamSuffix is sub id (8) | shard (2) | gen (8) | static.
func streamSuffix(k *storagev1.StreamKey) []byte {
	b := binary.BigEndian.AppendUint64(nil, k.GetSubscriptionId())
	b = binary.BigEndian.AppendUint16(b, uint16(k.GetShard()))
	b = binary.BigEndian.AppendUint64(b, k.GetGeneration())
	return append(b, k.GetStaticIndex()...)
}

func retainedSuffix(k *storagev1.RetainedBatchKey) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, k.GetSubscriptionId()), k.GetId())
}

// parseSessionKey splits the part of a session key after S|09.
func parseSessionKey(rest []byte) (clientID string, sub byte, suffix []byte, ok bool) {
	if len(rest) < 2 {
		return "", 0, nil, false
	}
	n := int(binary.BigEndian.Uint16(rest))
	if len(rest) < 2+n+1 {
		return "", 0, nil, false
	}
	return string(rest[2 : 2+n]), rest[2+n], rest[2+n+1:], true
}

func prettySessionKey(shard int, rest []byte) string {
	cid, sub, suffix, ok := parseSessionKey(rest)
	if !ok {
		return fmt.Sprintf("%d/session/%x", shard, rest)
	}
	name := map[byte]string{subSessionRecord: "record", subSessionSub: "sub", subSessionState: "state",
		subSessionStream: "stream", subSessionRetained: "retained"}[sub]
	if name == "" {
		name = fmt.Sprintf("%02x", sub)
	}
	if len(suffix) == 0 {
		return fmt.Sprintf("%d/session/%q/%s", shard, cid, name)
	}
	return fmt.Sprintf("%d/session/%q/%s/%x", shard, cid, name, suffix)
}

// loadSessions reads the guard counter and every session of a shard.
func loadSessions(db *DB, st *shardState) error {
	var counter storagev1.SessionGuardCounter
	if _, err := db.getValue(sessionGuardKey(st.shard), &counter); err != nil {
		return err
	}
	st.guardCounter = counter.Last
	err := db.scan(shardPrefix(st.shard, tagSession), func(k, v []byte) error {
		cid, sub, suffix, ok := parseSessionKey(k[3:])
		if !ok {
			return fmt.Errorf("%w: bad session key %s", ErrCorruption, prettyKey(k))
		}
		s := st.sessions[cid]
		if s == nil {
			s = newSessionState()
			st.sessions[cid] = s
		}
		switch sub {
		case subSessionRecord:
			s.rec = &storagev1.SessionRecord{}
			return decodeValue(k, v, s.rec)
		case subSessionSub:
			m := &storagev1.Subscription{}
			if len(suffix) != 8 {
				return fmt.Errorf("%w: bad session key %s", ErrCorruption, prettyKey(k))
			}
			putIn(&s.subs, binary.BigEndian.Uint64(suffix), m)
			return decodeValue(k, v, m)
		case subSessionState:
			m := &storagev1.SubscriptionState{}
			if len(suffix) != 8 {
				return fmt.Errorf("%w: bad session key %s", ErrCorruption, prettyKey(k))
			}
			putIn(&s.states, binary.BigEndian.Uint64(suffix), m)
			return decodeValue(k, v, m)
		case subSessionStream:
			m := &storagev1.StreamRing{}
			putIn(&s.streams, string(suffix), m)
			return decodeValue(k, v, m)
		case subSessionRetained:
			m := &storagev1.RetainedBatch{}
			putIn(&s.retained, string(suffix), m)
			return decodeValue(k, v, m)
		}
		return fmt.Errorf("%w: unknown session key %s", ErrCorruption, prettyKey(k))
	})
	if err != nil {
		return err
	}
	for cid, s := range st.sessions {
		if s.rec == nil || s.rec.ClientId != cid {
			return fmt.Errorf("%w: shard %d: session %q has no record", ErrCorruption, st.shard, cid)
		}
	}
	return loadWills(db, st)
}
