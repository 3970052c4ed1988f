package main

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/dsd/client"
)

// siteDialOptions is how this site dials the others: with dsd's TLS keys,
// its own certificate as the client certificate and dsd.tls.cacertfile to
// verify theirs (mutual TLS, the other site mapping this certificate's
// name to the site role); without TLS in plaintext, as dsd listens then.
func siteDialOptions(t config.DSDTLS) ([]grpc.DialOption, error) {
	if t.CertFile == "" {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	opt, err := client.WithTLS(client.TLSFiles{CAFile: t.CACertFile, CertFile: t.CertFile, KeyFile: t.KeyFile})
	if err != nil {
		return nil, fmt.Errorf("dsd: TLS between sites: %w", err)
	}
	return []grpc.DialOption{opt}, nil
}
