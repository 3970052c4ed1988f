package client

import (
	"context"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
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
