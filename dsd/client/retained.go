package client

import (
	"context"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/retainedorder"
)

// Retained returns the RetainedService stub of the connection.
func (c *Client) Retained() dsdv1.RetainedServiceClient {
	return dsdv1.NewRetainedServiceClient(c.conn)
}

// MatchRetained calls fn for every retained message whose topic name matches
// filter, in topic name order, fetching pages of up to pageSize (0: dsd's
// default). It stops at the first error, fn's included.
func (c *Client) MatchRetained(ctx context.Context, filter string, pageSize int, fn func(*storagev1.Message) error) error {
	stub := c.Retained()
	token := ""
	for {
		res, err := stub.MatchRetained(ctx, &dsdv1.MatchRetainedRequest{TopicFilter: filter, PageToken: token, Limit: uint32(pageSize)})
		if err != nil {
			return err
		}
		for _, m := range res.GetMessages() {
			if err := fn(m); err != nil {
				return err
			}
		}
		if res.GetNextPageToken() == "" {
			return nil
		}
		token = res.GetNextPageToken()
	}
}

// RetainedSource is a site and the shards it is asked for: the shards it
// leads.
type RetainedSource struct {
	Client *Client
	Shards []uint32
}

// MatchRetainedMerged is MatchRetained over a cluster: every source lists
// the records of its shards (MatchRetainedRequest.shards), and per topic the
// record with the greatest order key across them decides (retainedorder),
// so a tombstone in one shard hides an older message in another. fn gets
// the live messages in topic name order. The sources must cover every
// shard, each once.
func MatchRetainedMerged(ctx context.Context, sources []RetainedSource, filter string, pageSize int, fn func(*storagev1.Message) error) error {
	return mergeRetained(ctx, sources, filter, pageSize, func(_ string, rec *storagev1.RetainedRecord) error {
		if m := rec.GetMessage(); m != nil {
			return fn(m)
		}
		return nil
	})
}

// RetainedRecordMerged is the record of topic with the greatest order key
// across the sources (nil: none): a message, or a tombstone.
func RetainedRecordMerged(ctx context.Context, sources []RetainedSource, topic string) (*storagev1.RetainedRecord, error) {
	var out *storagev1.RetainedRecord
	err := mergeRetained(ctx, sources, topic, 1, func(t string, rec *storagev1.RetainedRecord) error {
		if t == topic {
			out = rec
		}
		return nil
	})
	return out, err
}

// mergeRetained calls fn in topic name order with each matching topic's
// record of the greatest order key across the sources.
func mergeRetained(ctx context.Context, sources []RetainedSource, filter string, pageSize int, fn func(topic string, rec *storagev1.RetainedRecord) error) error {
	pages := make([]*retainedPages, len(sources))
	for i, s := range sources {
		pages[i] = &retainedPages{src: s, filter: filter, size: uint32(pageSize)}
	}
	for {
		topic, found := "", false
		for _, p := range pages {
			head, err := p.head(ctx)
			if err != nil {
				return err
			}
			if head != nil && (!found || head.GetTopic() < topic) {
				topic, found = head.GetTopic(), true
			}
		}
		if !found {
			return nil
		}
		var best *storagev1.RetainedRecord
		for _, p := range pages {
			if head, _ := p.head(ctx); head != nil && head.GetTopic() == topic {
				best = retainedorder.Newer(best, head.GetRecord())
				p.buf = p.buf[1:]
			}
		}
		if err := fn(topic, best); err != nil {
			return err
		}
	}
}

// retainedPages reads one source's records a page at a time.
type retainedPages struct {
	src    RetainedSource
	filter string
	size   uint32
	buf    []*dsdv1.RetainedEntry
	token  string
	done   bool
}

// head is the source's next record (nil at its end), fetching pages as
// needed (a page may be empty and still have a next one).
func (p *retainedPages) head(ctx context.Context) (*dsdv1.RetainedEntry, error) {
	for len(p.buf) == 0 && !p.done {
		res, err := p.src.Client.Retained().MatchRetained(ctx, &dsdv1.MatchRetainedRequest{
			TopicFilter: p.filter, PageToken: p.token, Limit: p.size, Shards: p.src.Shards})
		if err != nil {
			return nil, err
		}
		p.buf, p.token = res.GetRecords(), res.GetNextPageToken()
		p.done = p.token == ""
	}
	if len(p.buf) == 0 {
		return nil, nil
	}
	return p.buf[0], nil
}
