package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// Role is what a caller may do.
type Role string

// Roles, from least to most privileged for the calls that need one.
const (
	RoleGateway Role = "gateway"
	RoleService Role = "service"
	RoleAdmin   Role = "admin"
)

// adminMethods change dsd's structure and require RoleAdmin.
var adminMethods = map[string]bool{
	"/strata.dsd.v1.AdminService/AddGeneration":     true,
	"/strata.dsd.v1.AdminService/DropGeneration":    true,
	"/strata.dsd.v1.RetainedService/DeleteRetained": true,
}

// TLSFiles name the PEM files of dsd's TLS set-up.
type TLSFiles struct {
	CertFile, KeyFile string
	// CACertFile, when set, requires and verifies client certificates.
	CACertFile string
}

// LoadTLS builds the server TLS configuration; nil when no certificate is set.
func LoadTLS(f TLSFiles) (*tls.Config, error) {
	if f.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("dsd: tls: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f.CACertFile != "" {
		pem, err := os.ReadFile(f.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("dsd: tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("dsd: tls: %s holds no PEM certificate", f.CACertFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// authorizer decides a caller's role from its verified client certificate.
type authorizer struct {
	// mutual is set when client certificates are required; without it every
	// caller is trusted as admin (the listener is loopback-only, or the
	// operator chose unsafe_plaintext_listen).
	mutual      bool
	roles       map[string]Role
	defaultRole Role
}

var errPermissionDenied = errors.New("dsd: permission denied")

func (a *authorizer) role(ctx context.Context) (Role, string, error) {
	if !a.mutual {
		return RoleAdmin, "", nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", "", fmt.Errorf("%w: no peer", errPermissionDenied)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", "", fmt.Errorf("%w: no verified client certificate", errPermissionDenied)
	}
	name := info.State.VerifiedChains[0][0].Subject.CommonName
	if r, ok := a.roles[name]; ok {
		return r, name, nil
	}
	return a.defaultRole, name, nil
}

// adminRequests need RoleAdmin for some of their requests: the function
// says which (nil req: a stream, always).
var adminRequests = map[string]func(req any) bool{
	// A guarded delete is a gateway's; an unguarded one is an operator's.
	"/strata.dsd.v1.SessionService/DeleteSession": func(req any) bool {
		r, ok := req.(*dsdv1.DeleteSessionRequest)
		return !ok || r.Guard == nil
	},
}

func (a *authorizer) check(ctx context.Context, method string, req any) error {
	role, name, err := a.role(ctx)
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	needsAdmin := adminMethods[method]
	if f := adminRequests[method]; f != nil && f(req) {
		needsAdmin = true
	}
	if needsAdmin && role != RoleAdmin {
		return status.Errorf(codes.PermissionDenied, "%v: %s needs the admin role; client %q has %q", errPermissionDenied, method, name, role)
	}
	return nil
}

func (a *authorizer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (a *authorizer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod, nil); err != nil {
		return err
	}
	return handler(srv, ss)
}
