package storage

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// IteratorPosition returns a key that is equal for two iterators exactly
// when they are of the same stream and filter and positioned after the same
// message, so that Next returns the same messages for both (a shared read).
// ok is false for an iterator that has read nothing yet (its start time
// decides what comes first) and for bad iterator bytes.
func IteratorPosition(itBytes []byte) (key string, ok bool) {
	it, err := decodeIterator(itBytes)
	if err != nil {
		return "", false
	}
	return iteratorPosition(it)
}

func iteratorPosition(it *storagev1.Iterator) (string, bool) {
	if len(it.LastSeenKey) == 0 {
		return "", false
	}
	b := make([]byte, 0, 32+len(it.StaticIndex)+len(it.TopicFilter)+len(it.LastSeenKey))
	b = binary.BigEndian.AppendUint32(b, it.Shard)
	b = binary.BigEndian.AppendUint64(b, it.Generation)
	b = binary.AppendUvarint(b, uint64(len(it.StaticIndex)))
	b = append(b, it.StaticIndex...)
	b = binary.AppendUvarint(b, uint64(len(it.TopicFilter)))
	b = append(b, it.TopicFilter...)
	b = append(b, it.LastSeenKey...)
	return string(b), true
}

// IteratorsAt returns each of its positioned where at is: at's last seen
// message, each its own start time; and the position they share
// (IteratorPosition of each, "" when at has read nothing). All must be of
// at's stream and filter; it is how readers that shared another's read move
// on. It runs for every reader of every shared read (32 per message in
// fan-out to 32 subscribers), so it decodes only at: of each of its it
// reads the fields in place and writes the result directly, in the bytes
// encodeIterator gives (fields in number order, zero values left out).
func IteratorsAt(its [][]byte, atBytes []byte) ([][]byte, string, error) {
	at, err := decodeIterator(atBytes)
	if err != nil {
		return nil, "", err
	}
	pos, _ := iteratorPosition(at)
	// head is fields 1-4 (at's stream and filter), tail field 6.
	var head, tail []byte
	if at.Shard != 0 {
		head = protowire.AppendTag(head, 1, protowire.VarintType)
		head = protowire.AppendVarint(head, uint64(at.Shard))
	}
	if at.Generation != 0 {
		head = protowire.AppendTag(head, 2, protowire.VarintType)
		head = protowire.AppendVarint(head, at.Generation)
	}
	if len(at.StaticIndex) > 0 {
		head = protowire.AppendTag(head, 3, protowire.BytesType)
		head = protowire.AppendBytes(head, at.StaticIndex)
	}
	if at.TopicFilter != "" {
		head = protowire.AppendTag(head, 4, protowire.BytesType)
		head = protowire.AppendString(head, at.TopicFilter)
	}
	if len(at.LastSeenKey) > 0 {
		tail = protowire.AppendTag(tail, 6, protowire.BytesType)
		tail = protowire.AppendBytes(tail, at.LastSeenKey)
	}
	out := make([][]byte, len(its))
	for i, b := range its {
		start, err := startOfIteratorAt(b, at)
		if err != nil {
			return nil, "", err
		}
		o := make([]byte, 0, 1+len(head)+1+binary.MaxVarintLen64+len(tail))
		o = append(o, valueVersion1)
		o = append(o, head...)
		if start != 0 {
			o = protowire.AppendTag(o, 5, protowire.VarintType)
			o = protowire.AppendVarint(o, uint64(start))
		}
		out[i] = append(o, tail...)
	}
	return out, pos, nil
}

// startOfIteratorAt returns the start time of the iterator b, which must be
// of at's stream and filter, reading its fields in place.
func startOfIteratorAt(b []byte, at *storagev1.Iterator) (int64, error) {
	if len(b) == 0 || b[0] != valueVersion1 {
		return 0, fmt.Errorf("%w: empty or unknown version", ErrInvalidIterator)
	}
	b = b[1:]
	var (
		shard        uint64
		gen          uint64
		static, filt []byte
		start        int64
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, fmt.Errorf("%w: %w", ErrInvalidIterator, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			shard, n = protowire.ConsumeVarint(b)
		case num == 2 && typ == protowire.VarintType:
			gen, n = protowire.ConsumeVarint(b)
		case num == 3 && typ == protowire.BytesType:
			static, n = protowire.ConsumeBytes(b)
		case num == 4 && typ == protowire.BytesType:
			filt, n = protowire.ConsumeBytes(b)
		case num == 5 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			start = int64(v)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return 0, fmt.Errorf("%w: %w", ErrInvalidIterator, protowire.ParseError(n))
		}
		b = b[n:]
	}
	if shard != uint64(at.Shard) || gen != at.Generation || string(static) != string(at.StaticIndex) || string(filt) != at.TopicFilter {
		return 0, fmt.Errorf("%w: iterator of another stream or filter", ErrInvalidIterator)
	}
	return start, nil
}
