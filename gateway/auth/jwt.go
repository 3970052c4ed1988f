package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stratamq/strata/config"
)

// Token is what a verified JWT tells about its client.
type Token struct {
	// Claims are the token's top-level string claims, for %{name} in ACL
	// patterns.
	Claims map[string]string
	// Expires is the "exp" claim plus auth.jwt.leeway; zero when the token
	// has no "exp". The connection is closed then (MQTT 5: DISCONNECT 0xA0).
	Expires time.Time
}

// jwtVerifier checks tokens with one algorithm and one key source.
type jwtVerifier struct {
	cfg    config.JWT
	secret []byte
	key    crypto.PublicKey // public_key_file
	jwks   *jwksFile        // jwks_file
	now    func() time.Time
}

// newJWTVerifier reads the keys of c (which Validate checked).
func newJWTVerifier(c config.JWT, now func() time.Time, checkInterval time.Duration) (*jwtVerifier, error) {
	v := &jwtVerifier{cfg: c, now: now}
	switch {
	case c.Secret != "":
		v.secret = []byte(c.Secret)
	case c.SecretFile != "":
		b, err := os.ReadFile(c.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth: jwt secret_file: %w", err)
		}
		v.secret = bytes.TrimRight(b, "\r\n")
		if len(v.secret) == 0 {
			return nil, fmt.Errorf("auth: jwt secret_file %s is empty", c.SecretFile)
		}
	case c.PublicKeyFile != "":
		k, err := readPublicKey(c.PublicKeyFile)
		if err != nil {
			return nil, err
		}
		if !keyFits(c.Algorithm, k) {
			return nil, fmt.Errorf("auth: jwt public_key_file %s: not a key for %s", c.PublicKeyFile, c.Algorithm)
		}
		v.key = k
	case c.JWKSFile != "":
		v.jwks = &jwksFile{path: c.JWKSFile, interval: checkInterval, now: now}
		if err := v.jwks.load(); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("auth: jwt: no key configured")
	}
	return v, nil
}

// looksLikeJWT reports whether a password has the form of a JWT in compact
// serialization: three parts separated by dots, the header a base64url JSON
// object ("eyJ" is how `{"` starts). Other passwords go to the password file.
func looksLikeJWT(pw []byte) bool {
	return bytes.HasPrefix(pw, []byte("eyJ")) && bytes.Count(pw, []byte(".")) == 2
}

// verify checks a token's signature, "exp" and "nbf" (with the leeway) and
// the configured claims; username and clientID replace %u and %c there. The
// error wraps ErrBadUserNameOrPassword.
func (v *jwtVerifier) verify(token []byte, username, clientID string) (jwt.MapClaims, *Token, error) {
	claims := jwt.MapClaims{}
	p := jwt.NewParser(jwt.WithValidMethods([]string{v.cfg.Algorithm}), jwt.WithLeeway(v.cfg.Leeway.Std()),
		jwt.WithTimeFunc(v.now))
	if _, err := p.ParseWithClaims(string(token), claims, v.keyFor); err != nil {
		return nil, nil, fmt.Errorf("%w: token: %w", ErrBadUserNameOrPassword, err)
	}
	for name, want := range v.cfg.VerifyClaims {
		switch want {
		case "%u":
			want = username
		case "%c":
			want = clientID
		}
		if got, ok := claims[name].(string); !ok || want == "" || got != want {
			return nil, nil, fmt.Errorf("%w: token: claim %q does not match", ErrBadUserNameOrPassword, name)
		}
	}
	t := &Token{Claims: map[string]string{}}
	for k, c := range claims {
		if s, ok := c.(string); ok {
			t.Claims[k] = s
		}
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		t.Expires = exp.Time.Add(v.cfg.Leeway.Std())
	}
	return claims, t, nil
}

// keyFor is the jwt.Keyfunc: the configured key, or the JWKS key named by
// the token's "kid" (the only key when the set has one and the token names
// none).
func (v *jwtVerifier) keyFor(t *jwt.Token) (any, error) {
	switch {
	case v.secret != nil:
		return v.secret, nil
	case v.key != nil:
		return v.key, nil
	}
	kid, _ := t.Header["kid"].(string)
	k, err := v.jwks.key(kid)
	if err != nil {
		return nil, err
	}
	if !keyFits(v.cfg.Algorithm, k) {
		return nil, fmt.Errorf("jwks key %q is not a key for %s", kid, v.cfg.Algorithm)
	}
	return k, nil
}

func keyFits(alg string, k crypto.PublicKey) bool {
	switch k.(type) {
	case *rsa.PublicKey:
		return alg == "RS256"
	case *ecdsa.PublicKey:
		return alg == "ES256"
	}
	return false
}

// readPublicKey reads a PEM public key or certificate.
func readPublicKey(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: jwt public_key_file: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("auth: jwt public_key_file %s holds no PEM block", path)
	}
	switch block.Type {
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: jwt public_key_file %s: %w", path, err)
		}
		return cert.PublicKey, nil
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: jwt public_key_file %s: %w", path, err)
		}
		return k, nil
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: jwt public_key_file %s: %w", path, err)
	}
	return k, nil
}

// jwksFile is a JWKS file read again when its size, modification time or
// identity changes, looked at most once per interval. A file that no longer
// parses leaves the keys read before in force.
type jwksFile struct {
	path     string
	interval time.Duration
	now      func() time.Time
	mu       struct {
		sync.Mutex
		keys    map[string]crypto.PublicKey
		info    os.FileInfo
		checked time.Time // when the file was last looked at
		err     error
	}
}

func (f *jwksFile) load() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loadLocked()
}

func (f *jwksFile) loadLocked() error {
	f.mu.checked = f.now()
	info, err := os.Stat(f.path)
	if err != nil {
		f.mu.err = fmt.Errorf("auth: jwt jwks_file: %w", err)
		return f.mu.err
	}
	if sameFile(f.mu.info, info) {
		return nil
	}
	b, err := os.ReadFile(f.path)
	if err == nil {
		var keys map[string]crypto.PublicKey
		if keys, err = parseJWKS(b); err == nil {
			f.mu.keys, f.mu.info, f.mu.err = keys, info, nil
			return nil
		}
	}
	f.mu.err = fmt.Errorf("auth: jwt jwks_file %s not (re)loaded: %w", f.path, err)
	return f.mu.err
}

// key returns the key named kid, looking at the file first when the check
// interval has passed.
func (f *jwksFile) key(kid string) (crypto.PublicKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Also when the clock went back: never trust a check "in the future".
	if now := f.now(); now.Sub(f.mu.checked) >= f.interval || now.Before(f.mu.checked) {
		_ = f.loadLocked() // the keys before stay in force; the error is kept
	}
	if kid == "" && len(f.mu.keys) == 1 {
		for _, k := range f.mu.keys {
			return k, nil
		}
	}
	k, ok := f.mu.keys[kid]
	if !ok {
		return nil, fmt.Errorf("no key %q in the jwks file", kid)
	}
	return k, nil
}
