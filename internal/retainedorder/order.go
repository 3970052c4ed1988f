// Package retainedorder is the order of retained updates, which dsd applies
// within a shard and every reader applies across shards: of the records one
// topic has in several shards, the one with the greatest order key is the
// topic's retained state (a message, or none for a tombstone).
//
// The order key is (timestamp_us, shard, publisher client id), compared in
// that order.
package retainedorder

import storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"

// Less reports whether record a sorts before record b.
func Less(a, b *storagev1.RetainedRecord) bool {
	if a.GetTimestampUs() != b.GetTimestampUs() {
		return a.GetTimestampUs() < b.GetTimestampUs()
	}
	if a.GetShard() != b.GetShard() {
		return a.GetShard() < b.GetShard()
	}
	return a.GetPublisherClientId() < b.GetPublisherClientId()
}

// Newer returns the record with the greater order key: a, unless b is
// greater (nil counts as the least).
func Newer(a, b *storagev1.RetainedRecord) *storagev1.RetainedRecord {
	if a == nil || (b != nil && Less(a, b)) {
		return b
	}
	return a
}
