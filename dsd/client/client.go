// Package client is a small Go client for dsd's gRPC API, for services,
// dstool and tests. It wraps the generated strata.dsd.v1 stubs and adds the
// one composite operation callers keep needing: read every message that
// matches a topic filter since a time, across shards, generations and streams.
//
// It depends only on the generated API, never on dsd's storage packages, so
// the gateway may use it too.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	"github.com/stratamq/strata/internal/tlsconf"
)

// maxReplyBytes is the largest reply the client accepts.
const maxReplyBytes = 64 << 20

// Keepalive of the client's connection: a ping after keepaliveTime without
// activity, the connection closed when it is not answered within
// keepaliveTimeout. dsd tolerates pings every 10s at most
// (server.DefaultKeepaliveMinTime), so keepaliveTime stays above that.
const (
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
)

// Client is a connection to one dsd.
type Client struct {
	conn *grpc.ClientConn
	// Storage and Admin are the raw service stubs.
	Storage dsdv1.StorageServiceClient
	Admin   dsdv1.AdminServiceClient
}

// Dial connects to dsd at addr (host:port). The connection is lazy: errors
// surface on the first call.
func Dial(addr string, opts ...grpc.DialOption) (*Client, error) {
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	// dsd bounds its replies at about 4 MiB plus one message of up to
	// max_packet_size; accept what it may send.
	opts = append([]grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxReplyBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true}),
	}, opts...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("dsd client: %w", err)
	}
	return &Client{conn: conn, Storage: dsdv1.NewStorageServiceClient(conn), Admin: dsdv1.NewAdminServiceClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// ReadAll reads messages matching filter with timestamps ≥ sinceUs from every
// stream, stopping each stream at its readable end (no waiting). The result is
// ordered by (timestamp, shard); limit > 0 keeps the earliest limit messages.
// Messages of one publisher and topic are always in publish order.
func (c *Client) ReadAll(ctx context.Context, filter string, sinceUs int64, limit int) ([]*dsdv1.StoredMessage, error) {
	streams, err := c.Storage.GetStreams(ctx, &dsdv1.GetStreamsRequest{TopicFilter: filter, StartTimeUs: sinceUs})
	if err != nil {
		return nil, err
	}
	var all []*dsdv1.StoredMessage
	for _, st := range streams.GetStreams() {
		msgs, err := c.ReadStream(ctx, st, filter, sinceUs, limit)
		if err != nil {
			return nil, err
		}
		all = append(all, msgs...)
	}
	sort.SliceStable(all, func(i, j int) bool {
		return all[i].GetMessage().GetTimestampUs() < all[j].GetMessage().GetTimestampUs()
	})
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	return all, nil
}

// ReadStream reads a stream's messages that match filter from sinceUs,
// at most limit of them (0: all).
func (c *Client) ReadStream(ctx context.Context, st *dsdv1.Stream, filter string, sinceUs int64, limit int) ([]*dsdv1.StoredMessage, error) {
	it, err := c.Storage.MakeIterator(ctx, &dsdv1.MakeIteratorRequest{Stream: st, TopicFilter: filter, StartTimeUs: sinceUs})
	if err != nil {
		return nil, err
	}
	iter := it.GetIterator()
	var out []*dsdv1.StoredMessage
	for limit <= 0 || len(out) < limit {
		res, err := c.Storage.Next(ctx, &dsdv1.NextRequest{Iterator: iter, MaxMessages: 1000})
		if err != nil {
			return nil, err
		}
		out = append(out, res.GetMessages()...)
		iter = res.GetIterator()
		if res.GetEndOfStream() || len(res.GetMessages()) == 0 {
			break
		}
	}
	return out, nil
}

// TLSFiles name the PEM files a client uses to reach dsd over TLS.
type TLSFiles struct {
	// CAFile verifies dsd's certificate.
	CAFile string
	// CertFile and KeyFile are the client certificate for mTLS (optional).
	CertFile, KeyFile string
	// ServerName overrides the name checked in dsd's certificate.
	ServerName string
}

// CertName returns the Common Name of the certificate in the PEM file
// certFile (a gateway's default id under mTLS).
func CertName(certFile, keyFile string) (string, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return "", fmt.Errorf("dsd client: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return "", fmt.Errorf("dsd client: %s: %w", certFile, err)
	}
	return leaf.Subject.CommonName, nil
}

// WithTLS returns a dial option for a TLS (or mTLS) connection.
func WithTLS(f TLSFiles) (grpc.DialOption, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CAFile != "" {
		pool, err := tlsconf.CertPool(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("dsd client: %w", err)
		}
		cfg.RootCAs = pool
	}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("dsd client: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg)), nil
}
