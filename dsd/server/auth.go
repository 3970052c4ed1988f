package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/stratamq/strata/dsd/storage"
	"github.com/stratamq/strata/internal/tlsconf"
)

// Role is what a caller may do; methodRules (authz.go) lists, per method,
// the roles allowed.
type Role string

// Roles, from least to most privileged for the calls that need one.
const (
	RoleGateway Role = "gateway"
	RoleService Role = "service"
	RoleAdmin   Role = "admin"
	// RoleSite is another dsd of the cluster: it may call SiteService (the
	// raft transport and joining) and nothing else.
	RoleSite Role = "site"
)

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
	cfg, err := tlsconf.Server(f.CertFile, f.KeyFile, f.CACertFile, tls.RequireAndVerifyClientCert)
	if err != nil {
		return nil, fmt.Errorf("dsd: tls: %w", err)
	}
	return cfg, nil
}

// mutualTLS reports whether cfg requires verified client certificates.
func mutualTLS(cfg *tls.Config) bool {
	return cfg != nil && cfg.ClientAuth == tls.RequireAndVerifyClientCert && cfg.ClientCAs != nil
}

// Errors of authorization, translated by statusFor.
var (
	// errUnauthenticated: no verified client certificate.
	errUnauthenticated = errors.New("dsd: unauthenticated")
	// errPermissionDenied: the caller's role may not make the call.
	errPermissionDenied = errors.New("dsd: permission denied")
)

// caller is who makes a call: its role and the names its certificate holds.
type caller struct {
	role Role
	// name is the certificate's Common Name; "" for a trusted caller of a
	// listener without client certificates (loopback, or
	// unsafe_plaintext_listen), which is admin.
	name string
	// names are the Common Name and the DNS subject alternative names: a
	// gateway certificate may act as any of these gateway ids.
	names []string
}

// isGatewayID reports whether the caller may act as gateway id: an admin
// may act as any gateway; a gateway only as a name of its certificate;
// a service as none.
func (c caller) isGatewayID(id string) bool {
	switch c.role {
	case RoleAdmin:
		return true
	case RoleGateway:
		return slices.Contains(c.names, id)
	}
	return false
}

func (c caller) String() string {
	if c.name == "" {
		return fmt.Sprintf("trusted local caller (%s)", c.role)
	}
	return fmt.Sprintf("client %q (%s)", c.name, c.role)
}

// authorizer decides a caller's role from its verified client certificate
// and applies methodRules.
type authorizer struct {
	// mutual is set when client certificates are required. Without it
	// every caller is admin: Listen allows that only on loopback
	// addresses or with unsafe_plaintext_listen.
	mutual      bool
	roles       map[string]Role
	defaultRole Role
	db          *storage.DB
	rules       map[string]methodRule
}

func newAuthorizer(mutual bool, roles map[string]Role, defaultRole Role, db *storage.DB) *authorizer {
	return &authorizer{mutual: mutual, roles: roles, defaultRole: defaultRole, db: db, rules: methodRules}
}

// caller finds who is calling.
func (a *authorizer) caller(ctx context.Context) (caller, error) {
	if !a.mutual {
		return caller{role: RoleAdmin}, nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return caller{}, fmt.Errorf("%w: no peer", errUnauthenticated)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return caller{}, fmt.Errorf("%w: no verified client certificate", errUnauthenticated)
	}
	return a.callerOf(info.State.VerifiedChains)
}

// callerOf is the caller a connection's verified chains name (gRPC's, or
// an HTTP request's for the REST API).
func (a *authorizer) callerOf(chains [][]*x509.Certificate) (caller, error) {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return caller{}, fmt.Errorf("%w: no verified client certificate", errUnauthenticated)
	}
	cert := chains[0][0]
	c := caller{name: cert.Subject.CommonName, role: a.defaultRole}
	if r, ok := a.roles[c.name]; ok {
		c.role = r
	}
	c.names = append([]string{c.name}, cert.DNSNames...)
	return c, nil
}

// authorize finds the caller and checks that its role may call method.
func (a *authorizer) authorize(ctx context.Context, method string) (caller, methodRule, error) {
	c, err := a.caller(ctx)
	if err != nil {
		return c, methodRule{}, err
	}
	rule, ok := a.rules[method]
	if !ok {
		return c, rule, fmt.Errorf("%w: %s is not in dsd's method table (deny by default)", errPermissionDenied, method)
	}
	if !slices.Contains(rule.roles, c.role) {
		return c, rule, fmt.Errorf("%w: %s needs the role %v; %s", errPermissionDenied, method, rolesText(rule.roles), c)
	}
	return c, rule, nil
}

func (a *authorizer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	c, rule, err := a.authorize(ctx, info.FullMethod)
	if err == nil && rule.check != nil {
		err = rule.check(a, c, req)
	}
	if err != nil {
		return nil, statusFor(err)
	}
	resp, err := handler(ctx, req)
	if err == nil && rule.filter != nil {
		rule.filter(c, resp)
	}
	return resp, err
}

func (a *authorizer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	c, rule, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return statusFor(err)
	}
	return handler(srv, &authorizedStream{ServerStream: ss, a: a, c: c, rule: rule})
}

// authorizedStream applies the rule's check to the first request of a
// stream (a GatewayLink's hello).
type authorizedStream struct {
	grpc.ServerStream
	a       *authorizer
	c       caller
	rule    methodRule
	checked bool
}

func (s *authorizedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if !s.checked && s.rule.check != nil {
		s.checked = true
		if err := s.rule.check(s.a, s.c, m); err != nil {
			return statusFor(err)
		}
	}
	return nil
}

// rolesText lists roles for an error message.
func rolesText(rs []Role) string {
	if len(rs) == 1 {
		return string(rs[0])
	}
	out := ""
	for i, r := range rs {
		if i > 0 {
			out += " or "
		}
		out += string(r)
	}
	return out
}
