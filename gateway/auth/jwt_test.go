package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stratamq/strata/config"
)

// jwtConfig is an auth config with JWT on and no password file.
func jwtConfig(t *testing.T, j config.JWT) config.Auth {
	c := testConfig(t, nil)
	c.AllowAnonymous = config.AnonymousDeny
	j.Enable = true
	if j.Leeway == 0 {
		j.Leeway = config.Duration(5 * time.Second)
	}
	c.JWT = j
	return c
}

func sign(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) []byte {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(s)
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil { // a new inode, as tools replace files
		t.Fatal(err)
	}
	return p
}

// TestJWT: a JWT in the password field authenticates with HS256, RS256 or
// ES256; exp and nbf hold with the leeway; only the configured algorithm
// is accepted; verify_claims binds the token to the username; the token's
// expiry and string claims come with the identity.
func TestJWT(t *testing.T) {
	dir := t.TempDir()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := writeFile(t, dir, "rsa.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	secretFile := writeFile(t, dir, "secret", []byte("s3cret-key-of-some-length\n"))

	hs := jwtConfig(t, config.JWT{Algorithm: "HS256", SecretFile: secretFile, VerifyClaims: map[string]string{"sub": "%u"}})
	rs := jwtConfig(t, config.JWT{Algorithm: "RS256", PublicKeyFile: pubFile})
	secret := []byte("s3cret-key-of-some-length")
	a, clk := newTestAuthenticator(t, hs)
	now := clk.Now()
	ctx := context.Background()
	check := func(a *Authenticator, user string, tok []byte) (Identity, error) {
		return a.Check(ctx, Request{Username: user, ClientID: "c1", Password: tok, HasPassword: true})
	}
	exp := now.Add(time.Hour)
	good := sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "alice", "exp": exp.Unix(), "tenant": "acme", "n": 7})
	id, err := check(a, "alice", good)
	if err != nil {
		t.Fatal(err)
	}
	if id.Username != "alice" || !id.Authenticated || id.Token == nil || !id.Token.Expires.Equal(exp.Add(5*time.Second)) ||
		id.Token.Claims["tenant"] != "acme" || len(id.Token.Claims) != 2 {
		t.Fatalf("identity %+v %+v", id, id.Token)
	}
	for name, tc := range map[string]struct {
		user string
		tok  []byte
	}{
		"another user's token":      {"bob", good},
		"wrong secret":              {"alice", sign(t, jwt.SigningMethodHS256, []byte("other"), "", jwt.MapClaims{"sub": "alice"})},
		"expired beyond the leeway": {"alice", sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "alice", "exp": now.Add(-6 * time.Second).Unix()})},
		"not yet valid":             {"alice", sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "alice", "nbf": now.Add(time.Minute).Unix()})},
		"other algorithm":           {"alice", sign(t, jwt.SigningMethodHS384, secret, "", jwt.MapClaims{"sub": "alice"})},
		"alg none":                  {"alice", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", jwt.MapClaims{"sub": "alice"})},
	} {
		if _, err := check(a, tc.user, tc.tok); !errors.Is(err, ErrBadUserNameOrPassword) {
			t.Errorf("%s: err %v, want ErrBadUserNameOrPassword", name, err)
		}
	}
	if _, err := check(a, "alice", sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "alice", "exp": now.Add(-4 * time.Second).Unix()})); err != nil {
		t.Errorf("expired within the leeway: %v", err)
	}
	// A password that is not a JWT goes the usual way (here: no password
	// file and no anonymous access).
	if _, err := check(a, "alice", []byte("plain")); !errors.Is(err, ErrBadUserNameOrPassword) {
		t.Errorf("plain password: %v", err)
	}

	// RS256 with a public key file; an HS256 token signed with the public
	// key's bytes (algorithm confusion) is refused.
	ra, _ := newTestAuthenticator(t, rs)
	id, err = check(ra, "", sign(t, jwt.SigningMethodRS256, rsaKey, "", jwt.MapClaims{"sub": "dev-9"}))
	if err != nil || id.Username != "dev-9" || !id.Token.Expires.IsZero() {
		t.Fatalf("RS256 without a username: %+v, %v", id, err)
	}
	if _, err := check(ra, "x", sign(t, jwt.SigningMethodHS256, der, "", jwt.MapClaims{"sub": "x"})); !errors.Is(err, ErrBadUserNameOrPassword) {
		t.Errorf("algorithm confusion: %v", err)
	}
}

// TestJWKSReload: ES256 keys from a JWKS file chosen by kid; the file is
// read again when it changes (a rotated key works, a removed one no longer
// does), and a broken file leaves the keys before in force.
func TestJWKSReload(t *testing.T) {
	dir := t.TempDir()
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks := func(keys map[string]*ecdsa.PrivateKey) []byte {
		var set struct {
			Keys []map[string]string `json:"keys"`
		}
		for kid, k := range keys {
			pt, err := k.PublicKey.Bytes() // 0x04 || X || Y
			if err != nil {
				t.Fatal(err)
			}
			set.Keys = append(set.Keys, map[string]string{"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
				"x": base64.RawURLEncoding.EncodeToString(pt[1:33]),
				"y": base64.RawURLEncoding.EncodeToString(pt[33:])})
		}
		b, _ := json.Marshal(set)
		return b
	}
	path := writeFile(t, dir, "jwks.json", jwks(map[string]*ecdsa.PrivateKey{"k1": k1}))
	a, clk := newTestAuthenticator(t, jwtConfig(t, config.JWT{Algorithm: "ES256", JWKSFile: path}))
	check := func(kid string, k *ecdsa.PrivateKey) error {
		_, err := a.Check(context.Background(), Request{Username: "u", Password: sign(t, jwt.SigningMethodES256, k, kid, jwt.MapClaims{}), HasPassword: true})
		return err
	}
	if err := check("k1", k1); err != nil {
		t.Fatal(err)
	}
	if err := check("", k1); err != nil {
		t.Fatalf("no kid, one key: %v", err)
	}
	if err := check("k2", k2); err == nil {
		t.Fatal("unknown kid accepted")
	}
	writeFile(t, dir, "jwks.json", jwks(map[string]*ecdsa.PrivateKey{"k2": k2}))
	clk.Advance(2 * DefaultCheckInterval)
	if err := check("k2", k2); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if err := check("k1", k1); err == nil {
		t.Fatal("removed key still accepted")
	}
	writeFile(t, dir, "jwks.json", []byte("{not json"))
	clk.Advance(2 * DefaultCheckInterval)
	if err := check("k2", k2); err != nil {
		t.Fatalf("a broken file must leave the keys in force: %v", err)
	}
}

// TestJWTClaimsInACL: %{claim} in an ACL pattern is the token's string
// claim; without a token (or the claim) the pattern fails closed.
func TestJWTClaimsInACL(t *testing.T) {
	acl, err := NewACL(config.ACL{Rules: []config.ACLRule{
		deny("all", "", "tenants/%{tenant}/admin/#"),
		allow("all", "", "tenants/%{tenant}/#"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	acme := Identity{Username: "u", Authenticated: true, Token: &Token{Claims: map[string]string{"tenant": "acme"}}}
	evil := Identity{Username: "u", Authenticated: true, Token: &Token{Claims: map[string]string{"tenant": "#"}}}
	for _, tc := range []struct {
		id    Identity
		topic string
		want  bool
	}{
		{acme, "tenants/acme/x", true},
		{acme, "tenants/other/x", false},
		{acme, "tenants/acme/admin/x", false},
		{Identity{Username: "u", Authenticated: true}, "tenants/acme/x", false},
		{evil, "tenants/x/y", false},
	} {
		if got := acl.Authorize(tc.id, "c", Publish, tc.topic); got != tc.want {
			t.Errorf("%+v %s: %v, want %v", tc.id.Token, tc.topic, got, tc.want)
		}
	}
	if _, err := NewACL(config.ACL{Rules: []config.ACLRule{allow("all", "", "a/%{open")}}); !errors.Is(err, ErrACL) {
		t.Errorf("unclosed %%{: %v", err)
	}
}

func TestJWTConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for name, j := range map[string]config.JWT{
		"missing secret file": {Algorithm: "HS256", SecretFile: filepath.Join(dir, "none")},
		"empty secret file":   {Algorithm: "HS256", SecretFile: writeFile(t, dir, "empty", []byte("\n"))},
		"not PEM":             {Algorithm: "RS256", PublicKeyFile: writeFile(t, dir, "bad.pem", []byte("x"))},
		"bad jwks":            {Algorithm: "ES256", JWKSFile: writeFile(t, dir, "bad.json", []byte(`{"keys":[]}`))},
	} {
		if _, err := New(jwtConfig(t, j)); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestParseJWKS(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	n := base64.RawURLEncoding.EncodeToString(k.N.Bytes())
	set := `{"keys":[
		{"kty":"RSA","kid":"r1","n":"` + n + `","e":"AQAB"},
		{"kty":"RSA","kid":"enc","use":"enc","n":"` + n + `","e":"AQAB"},
		{"kty":"oct","kid":"h","k":"c2VjcmV0"},
		{"kty":"EC","kid":"p384","crv":"P-384","x":"AA","y":"AA"}]}`
	keys, err := parseJWKS([]byte(set))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := keys["r1"].(*rsa.PublicKey); len(keys) != 1 || !ok || !got.Equal(&k.PublicKey) {
		t.Fatalf("keys %v", keys)
	}
	for name, bad := range map[string]string{
		"not json":    `{`,
		"bad point":   `{"keys":[{"kty":"EC","kid":"e","crv":"P-256","x":"` + n[:43] + `","y":"` + n[:43] + `"}]}`,
		"bad modulus": `{"keys":[{"kty":"RSA","kid":"r","n":"!","e":"AQAB"}]}`,
		"twice":       `{"keys":[{"kty":"RSA","kid":"r","n":"` + n + `","e":"AQAB"},{"kty":"RSA","kid":"r","n":"` + n + `","e":"AQAB"}]}`,
	} {
		if _, err := parseJWKS([]byte(bad)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}
