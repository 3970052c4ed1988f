package server

import (
	"context"
	"fmt"
	"time"

	"github.com/stratamq/strata/dsd/cluster"
	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	"github.com/stratamq/strata/internal/buildinfo"
)

// Limits on one Next call.
const (
	defaultNextMessages = 100
	maxNextMessages     = 10000
)

// storageService implements strata.dsd.v1.StorageService over a storage.DB.
type storageService struct {
	dsdv1.UnimplementedStorageServiceServer
	db      *storage.DB
	metrics *metrics
	// cluster, when set, adds the metadata group's view to Info.
	cluster *cluster.Cluster
}

func (s *storageService) Store(ctx context.Context, req *dsdv1.StoreRequest) (*dsdv1.StoreResponse, error) {
	if len(req.GetMessages()) == 0 {
		return nil, statusFor(fmt.Errorf("%w: store: no messages", errInvalidRequest))
	}
	var producer *storage.Producer
	if p := req.GetProducer(); p != nil {
		if p.GetClientId() != req.GetClientId() {
			return nil, statusFor(fmt.Errorf("%w: store: producer client id %q differs from the request's %q", errInvalidRequest, p.GetClientId(), req.GetClientId()))
		}
		producer = &storage.Producer{ClientID: p.GetClientId(), Epoch: p.GetEpoch(), FirstSeq: p.GetFirstSeq()}
		ids, err := packetIDs(p.GetQos2PacketIds())
		if err != nil {
			return nil, statusFor(err)
		}
		producer.QoS2PacketIDs = ids
	}
	start := time.Now()
	res, err := s.db.Store(ctx, req.GetClientId(), req.GetMessages(), producer)
	if err != nil {
		return nil, statusFor(err)
	}
	s.metrics.observeStore(res.Shard, time.Since(start))
	out := &dsdv1.StoreResponse{Shard: uint32(res.Shard), TimestampsUs: res.TimestampsUs, Result: dsdv1.StoreResult_STORE_RESULT_STORED}
	if res.Duplicate {
		out.Result = dsdv1.StoreResult_STORE_RESULT_DUPLICATE
	}
	return out, nil
}

func (s *storageService) GetStreams(ctx context.Context, req *dsdv1.GetStreamsRequest) (*dsdv1.GetStreamsResponse, error) {
	shard := -1
	if req.Shard != nil {
		if int(req.GetShard()) >= s.db.NShards() {
			return nil, statusFor(fmt.Errorf("%w: shard %d does not exist (n_shards = %d)", errInvalidRequest, req.GetShard(), s.db.NShards()))
		}
		shard = int(req.GetShard())
	}
	streams, err := s.db.GetStreams(req.GetTopicFilter(), req.GetStartTimeUs(), shard)
	if err != nil {
		return nil, statusFor(err)
	}
	out := &dsdv1.GetStreamsResponse{Streams: make([]*dsdv1.Stream, len(streams))}
	for i, st := range streams {
		out.Streams[i] = streamToProto(st)
	}
	return out, nil
}

func (s *storageService) MakeIterator(ctx context.Context, req *dsdv1.MakeIteratorRequest) (*dsdv1.MakeIteratorResponse, error) {
	if req.GetStream() == nil {
		return nil, statusFor(fmt.Errorf("%w: make iterator: no stream", errInvalidRequest))
	}
	it, err := s.db.MakeIterator(streamFromProto(req.GetStream()), req.GetTopicFilter(), req.GetStartTimeUs())
	if err != nil {
		return nil, statusFor(err)
	}
	return &dsdv1.MakeIteratorResponse{Iterator: it}, nil
}

func (s *storageService) Next(ctx context.Context, req *dsdv1.NextRequest) (*dsdv1.NextResponse, error) {
	// A batch is bounded by bytes as well as by count, so one reply fits the
	// server's send limit (a single larger message still comes alone).
	lim := storage.Limit{Max: int(req.GetMaxMessages()), MaxBytes: DefaultLinkMaxBatchBytes}
	if lim.Max == 0 {
		lim.Max = defaultNextMessages
	}
	if lim.Max > maxNextMessages {
		return nil, statusFor(fmt.Errorf("%w: next: max_messages %d exceeds %d", errInvalidRequest, lim.Max, maxNextMessages))
	}
	if req.Count != nil {
		if req.GetCount() == 0 || req.GetCount() > maxNextMessages {
			return nil, statusFor(fmt.Errorf("%w: next: count must be 1..%d, got %d", errInvalidRequest, maxNextMessages, req.GetCount()))
		}
		lim.Count = int(req.GetCount())
	}
	if len(req.GetEndIterator()) > 0 {
		lim.End = req.GetEndIterator()
	}
	start := time.Now()
	entries, next, eos, err := s.db.Next(ctx, req.GetIterator(), lim)
	if err != nil {
		return nil, statusFor(err)
	}
	s.metrics.next.Observe(time.Since(start).Seconds())
	out := &dsdv1.NextResponse{Iterator: next, EndOfStream: eos, Messages: make([]*dsdv1.StoredMessage, len(entries))}
	for i, e := range entries {
		out.Messages[i] = &dsdv1.StoredMessage{Key: e.Key, Message: e.Message}
	}
	return out, nil
}

func (s *storageService) Watermarks(ctx context.Context, req *dsdv1.WatermarksRequest) (*dsdv1.WatermarksResponse, error) {
	marks := s.db.Watermarks()
	out := &dsdv1.WatermarksResponse{Watermarks: make([]*dsdv1.ShardWatermark, len(marks))}
	for i, m := range marks {
		out.Watermarks[i] = &dsdv1.ShardWatermark{Shard: uint32(i), StartTimeUs: m}
	}
	return out, nil
}

func (s *storageService) Info(ctx context.Context, req *dsdv1.InfoRequest) (*dsdv1.InfoResponse, error) {
	out := &dsdv1.InfoResponse{Site: s.db.SiteID(), NShards: uint32(s.db.NShards()), DataDirFormat: storage.DataDirFormatVersion, Version: buildinfo.Get().Version,
		Cluster: clusterInfo(s.cluster)}
	for shard := range s.db.NShards() {
		gens := s.db.Generations(shard)
		info := &dsdv1.ShardInfo{
			Shard:           uint32(shard),
			ReadableClockUs: s.db.ReadableClock(shard),
			Generations:     gens,
			Messages:        s.db.MessageCounts(shard),
		}
		for _, g := range gens {
			if g.GetUntilUs() == 0 {
				info.CurrentGeneration = g.GetId()
			}
		}
		out.Shards = append(out.Shards, info)
	}
	return out, nil
}

func streamToProto(s storage.Stream) *dsdv1.Stream {
	return &dsdv1.Stream{Shard: uint32(s.Shard), Generation: s.Generation, StaticIndex: s.StaticIndex, Structure: s.Structure}
}

func streamFromProto(s *dsdv1.Stream) storage.Stream {
	return storage.Stream{Shard: int(s.GetShard()), Generation: s.GetGeneration(), StaticIndex: s.GetStaticIndex(), Structure: s.GetStructure()}
}
