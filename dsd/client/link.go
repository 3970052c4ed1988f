package client

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// DefaultLinkMaxRecvBytes bounds one message received on a Link. dsd's
// batches are at most its max_batch_bytes (or one largest message) plus
// framing, 5 MiB with the defaults.
const DefaultLinkMaxRecvBytes = 16 << 20

// Link is one GatewayLink stream: one per gateway epoch. Its methods that
// send may be called from any goroutine; Recv must be called from one
// goroutine at a time, and must keep being called (dsd stops pushing while
// its responses are not read).
//
// Entry ids are allocated by the Link, increasing from 1, so they are never
// reused on the stream.
type Link struct {
	stream dsdv1.GatewayLinkService_GatewayLinkClient
	cancel context.CancelFunc
	// Welcome is dsd's answer to the hello: its site, shards and limits.
	Welcome *dsdv1.GatewayWelcome

	// mu serializes Send (a gRPC stream allows one sender at a time) and
	// the allocation of entry ids with it, so ids reach dsd in order. It is
	// held across Send by design: Send is the critical section.
	mu struct {
		sync.Mutex
		lastID uint64
	}
}

// OpenLink opens a GatewayLink stream for the given gateway epoch, sends
// the hello and waits for dsd's welcome. The stream lives until Close or
// ctx ends; call options are added to the stream call (the default raises
// the receive limit to DefaultLinkMaxRecvBytes).
func (c *Client) OpenLink(ctx context.Context, gatewayID string, epoch uint64, opts ...grpc.CallOption) (*Link, error) {
	ctx, cancel := context.WithCancel(ctx)
	opts = append([]grpc.CallOption{grpc.MaxCallRecvMsgSize(DefaultLinkMaxRecvBytes)}, opts...)
	stream, err := dsdv1.NewGatewayLinkServiceClient(c.conn).GatewayLink(ctx, opts...)
	if err != nil {
		cancel()
		return nil, err
	}
	l := &Link{stream: stream, cancel: cancel}
	// Recv decodes stored values, so the link takes them (StoredValues).
	hello := &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Hello{Hello: &dsdv1.GatewayHello{GatewayId: gatewayID, Epoch: epoch, StoredValues: true}}}
	if err := stream.Send(hello); err != nil {
		cancel()
		return nil, l.recvErr(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, err
	}
	if l.Welcome = resp.GetWelcome(); l.Welcome == nil {
		cancel()
		return nil, fmt.Errorf("dsd client: gateway link: expected a welcome, got %T", resp.GetKind())
	}
	return l, nil
}

// recvErr turns a Send error into the stream's real status: gRPC reports
// io.EOF on Send when the stream ended, and the status comes from Recv.
func (l *Link) recvErr(sendErr error) error {
	if _, err := l.stream.Recv(); err != nil {
		return err
	}
	return sendErr
}

// AddWatch adds a Watch entry for a topic filter from startUs (a dsd
// watermark) in one shard, or every shard with shard < 0. Announcements
// carry the returned entry id.
func (l *Link) AddWatch(filter string, shard int, startUs int64) (uint64, error) {
	return l.AddSessionWatch(nil, filter, shard, startUs)
}

// AddRead adds a Read entry: dsd pushes the iterator's messages as they
// become readable, while fewer than window messages are unacked.
func (l *Link) AddRead(iterator []byte, window uint32) (uint64, error) {
	return l.AddReadBatch(iterator, window, 0)
}

// AddReadBatch is AddRead with a per-entry batch size (a zone's
// batch_size); 0 uses dsd's.
func (l *Link) AddReadBatch(iterator []byte, window, maxBatchMessages uint32) (uint64, error) {
	return l.AddSessionRead(nil, iterator, window, maxBatchMessages)
}

// addEntry allocates the next id and sends the request under the same
// lock, so ids reach dsd in increasing order.
func (l *Link) addEntry(req func(id uint64) *dsdv1.GatewayLinkRequest) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.lastID++
	id := l.mu.lastID
	if err := l.stream.Send(req(id)); err != nil {
		return 0, err
	}
	return id, nil
}

// Ack releases the window held by one batch of a Read entry.
func (l *Link) Ack(entryID, batchSeq uint64) error {
	return l.send(&dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Ack{Ack: &dsdv1.BatchAck{EntryId: entryID, BatchSeq: batchSeq}}})
}

// Remove ends an entry.
func (l *Link) Remove(entryID uint64) error {
	return l.send(&dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Remove{Remove: &dsdv1.RemoveEntry{EntryId: entryID}}})
}

// Heartbeat renews the link's lease; dsd answers with a HeartbeatAck
// echoing seq. A gateway sends one every gateway_heartbeat_interval.
func (l *Link) Heartbeat(seq uint64) error {
	return l.send(&dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Heartbeat{Heartbeat: &dsdv1.Heartbeat{Seq: seq}}})
}

// Send sends one request as it is. A caller that allocates its own entry
// ids (one router for a gateway's entries) must keep them increasing and
// must not mix them with the ids AddWatch and AddRead allocate.
func (l *Link) Send(req *dsdv1.GatewayLinkRequest) error { return l.send(req) }

func (l *Link) send(req *dsdv1.GatewayLinkRequest) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stream.Send(req)
}

// Recv returns the next event: an announcement, a batch or an entry error
// (switch on GetKind). An error ends the link: all its entries are gone.
// A batch's messages are decoded: each StoredMessage has its Message
// (dsd may send them in their stored encoding, StoredMessage.value).
func (l *Link) Recv() (*dsdv1.GatewayLinkResponse, error) {
	resp, err := l.stream.Recv()
	if err != nil {
		return nil, err
	}
	if b := resp.GetBatch(); b != nil {
		if err := decodeStored(b.GetMessages()); err != nil {
			l.cancel()
			return nil, fmt.Errorf("dsd client: gateway link: batch of entry %d: %w", b.GetEntryId(), err)
		}
	}
	return resp, nil
}

// decodeStored decodes the messages dsd sent in their stored encoding, in
// place; Value is dropped once decoded.
func decodeStored(msgs []*dsdv1.StoredMessage) error {
	for _, sm := range msgs {
		if sm.Message != nil || sm.Value == nil {
			continue
		}
		m := &storagev1.Message{}
		if err := proto.Unmarshal(sm.Value, m); err != nil {
			return fmt.Errorf("message %x: %w", sm.Key, err)
		}
		sm.Message, sm.Value = m, nil
	}
	return nil
}

// Close ends the stream; dsd removes all of its entries.
func (l *Link) Close() error {
	l.cancel()
	return nil
}
