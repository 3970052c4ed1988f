package session

import (
	"context"
	"errors"

	"github.com/stratamq/strata/gateway/packet"
)

// ErrQuotaExceeded: dsd refused a Store for lack of room or over a quota
// (PUBACK / PUBREC 0x97 in MQTT 5). A Storage returns it, ErrStaleGuard
// (the session was taken over: the connection closes) or ErrUnavailable
// (0x80); anything else is answered 0x80 too. An entry that fails with it
// (dsd's durable_sessions.max_link_entries) ends the connection with
// DISCONNECT 0x97.
var ErrQuotaExceeded = errors.New("session: quota exceeded")

// Message is an application message a client published, as stored: the
// topic resolved from a Topic Alias, the properties that travel with it.
type Message struct {
	Topic      string
	Payload    []byte
	QoS        byte
	Retain     bool
	Properties packet.Properties
}

// StoreRequest stores the messages a connection published, in order, as
// producer (ClientID, epoch Guard) with sequence numbers FirstSeq,
// FirstSeq+1, … (docs/sessions.md, "what a gateway must do").
type StoreRequest struct {
	ClientID string
	Guard    uint64
	FirstSeq uint64
	Messages []Message
	// QoS2PacketIDs has one entry per message: the packet id of a QoS 2
	// message, 0 for the others; nil when no message is QoS 2.
	QoS2PacketIDs []uint16
}

// ReleaseRequest drops a held QoS 2 packet id (the client's PUBREL).
type ReleaseRequest struct {
	ClientID string
	Guard    uint64
	PacketID uint16
}

// Storage stores what clients publish: dsd's ingest stream (package
// dsdbackend), or MemBackend. Implementations are safe for concurrent use.
type Storage interface {
	// Submit starts storing the messages and calls done exactly once: nil
	// once they are committed, by this Store or an earlier one
	// (DUPLICATE). Submit does not block, and done never runs on the
	// caller's goroutine (the caller may hold the lock done takes). Stores
	// of one client submitted in order complete in that order, so a
	// connection may have several in flight.
	Submit(req StoreRequest, done func(error))
	// Release drops a held QoS 2 packet id; released is false when the id
	// was not held.
	Release(ctx context.Context, req ReleaseRequest) (released bool, err error)
}

// StoreCode is the MQTT 5 reason code that answers a QoS 1 or 2 PUBLISH
// whose Store failed with err (not ErrStaleGuard, which closes the
// connection).
func StoreCode(err error) packet.ReasonCode {
	if errors.Is(err, ErrQuotaExceeded) {
		return packet.QuotaExceeded
	}
	return packet.UnspecifiedError
}
