package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/auth/passwd"
)

// DefaultCheckInterval is how often, at most, Authenticate looks at the
// password file's size, modification time and identity to see if it changed.
const DefaultCheckInterval = time.Second

// Identity is who a connection is, as Authenticate established it.
type Identity struct {
	// Username is the CONNECT's user name; it may be empty. When
	// Authenticated is false it is only what the client claimed.
	Username string
	// Authenticated is true when Username was verified: against the password
	// file, by a JWT, or by a client certificate.
	Authenticated bool
	// Token is set when a JWT authenticated the client: its claims and
	// expiry. Nil otherwise.
	Token *Token
}

// Authenticator checks CONNECT credentials against the password file
// (auth.password_file) and decides anonymous access (auth.allow_anonymous).
// It is safe for concurrent use and starts no goroutines: the check for a
// changed file happens inside Authenticate, at most once per
// DefaultCheckInterval, and Reload forces one (for example on SIGHUP).
type Authenticator struct {
	cfg       config.Auth
	hmacKey   [32]byte
	table     atomic.Pointer[userTable]
	good, bad *credCache // verified and refused credentials
	// byAddr and byUser limit failed authentications per source address
	// and per user name (auth.max_failures_per_address, _per_username).
	byAddr, byUser *failureLimiter
	// jwt checks passwords that are JSON Web Tokens (auth.jwt.enable).
	jwt    *jwtVerifier
	flight flight
	slots  chan struct{} // bounds concurrent hash computations

	// Test hooks.
	now           func() time.Time
	checkInterval time.Duration

	nextCheck atomic.Int64 // UnixNano of the next file check
	reloadMu  sync.Mutex   // serializes file checks and reloads; never held by Authenticate's verification

	dummyOnce sync.Once
	dummyHash string

	cacheHits, cacheMisses, verifications, shared, reloads, limited atomic.Int64
	lastErr                                                         atomic.Pointer[errorBox]
}

type errorBox struct{ err error }

// userTable is one generation of the password file.
type userTable struct {
	gen  uint64
	file *passwd.File // nil: no password file configured
	info os.FileInfo  // what the file looked like when read (nil without a file)
}

// New returns an Authenticator for c, reading the password file if one is
// configured; a missing or malformed file is an error. c is copied.
func New(c config.Auth) (*Authenticator, error) {
	a := &Authenticator{
		cfg:           c,
		now:           time.Now,
		checkInterval: DefaultCheckInterval,
		slots:         make(chan struct{}, runtime.GOMAXPROCS(0)),
	}
	if _, err := rand.Read(a.hmacKey[:]); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	ttl := c.CacheTTL.Std()
	a.good = newCredCache(c.CacheSize, ttl)
	// Refusals get a quarter of the room in their own cache, so a flood of
	// wrong passwords cannot evict the verified ones.
	a.bad = newCredCache(max(c.CacheSize/4, 1), ttl)
	a.byAddr = newFailureLimiter(c.MaxFailuresPerAddress, c.FailureTableSize)
	a.byUser = newFailureLimiter(c.MaxFailuresPerUsername, c.FailureTableSize)
	if c.JWT.Enable {
		v, err := newJWTVerifier(c.JWT, func() time.Time { return a.now() }, DefaultCheckInterval)
		if err != nil {
			return nil, err
		}
		a.jwt = v
	}
	t := &userTable{gen: 1}
	if c.PasswordFile != "" {
		info, err := os.Stat(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("auth: password file: %w", err)
		}
		f, err := passwd.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("auth: password file: %w", err)
		}
		t.file, t.info = f, info
	}
	a.table.Store(t)
	a.good.reset(t.gen)
	a.bad.reset(t.gen)
	return a, nil
}

// Request is one CONNECT to authenticate.
type Request struct {
	// Anonymous, when set, is the listener's own allow_anonymous, which
	// replaces auth.allow_anonymous.
	Anonymous *config.AnonymousMode
	// Loopback says whether the client's address is a loopback one
	// (allow_anonymous = "loopback").
	Loopback bool
	// Addr is the client's address; the zero value (unknown) is not
	// limited per address.
	Addr netip.Addr
	// ClientID is the client identifier, for auth.jwt.verify_claims ("%c").
	ClientID string
	// Username and Password are the CONNECT's; HasPassword says whether
	// it carried a password (an empty one counts). An empty username is
	// the same as none.
	Username    string
	Password    []byte
	HasPassword bool
}

// Authenticate is Check for a request without a client address.
func (a *Authenticator) Authenticate(ctx context.Context, listenerIsLoopback bool, username string, password []byte, hasPassword bool) (Identity, error) {
	return a.Check(ctx, Request{Loopback: listenerIsLoopback, Username: username, Password: password, HasPassword: hasPassword})
}

// Check decides a CONNECT.
//
//   - With auth.jwt.enable, a password that has the form of a JWT: the
//     token decides (see the package doc). The identity is the CONNECT's
//     username, or the token's "sub" when the CONNECT has none.
//   - No username, no password: anonymous; allowed per auth.allow_anonymous,
//     else ErrNotAuthorized.
//   - A password without a username: ErrBadUserNameOrPassword.
//   - A username with no password file configured: allowed as an
//     unauthenticated identity where anonymous access is allowed, else
//     ErrBadUserNameOrPassword.
//   - A username with a password file: the password must verify against the
//     user's hash (no password, unknown user or wrong password:
//     ErrBadUserNameOrPassword). Results are cached; see the package doc.
//
// Failed verifications are limited per source address and per user name
// (see the package doc): over either limit, credentials not in the cache of
// verified ones are refused with ErrTooManyFailures at once, without
// hashing.
//
// The error wraps one of the package's sentinels (ConnackCode maps it), or
// is ctx's error if ctx ended while the call waited for a verification.
func (a *Authenticator) Check(ctx context.Context, r Request) (Identity, error) {
	username, password, hasPassword := r.Username, r.Password, r.HasPassword
	if a.jwt != nil && hasPassword && looksLikeJWT(password) {
		return a.checkJWT(r)
	}
	mode := a.cfg.AllowAnonymous
	if r.Anonymous != nil {
		mode = *r.Anonymous
	}
	anonymousOK := mode.Allowed(r.Loopback)
	if username == "" {
		if hasPassword {
			return Identity{}, fmt.Errorf("%w: a password without a user name", ErrBadUserNameOrPassword)
		}
		if !anonymousOK {
			return Identity{}, fmt.Errorf("%w: anonymous access is not allowed on this listener", ErrNotAuthorized)
		}
		return Identity{}, nil
	}
	a.maybeReload()
	t := a.table.Load()
	if t.file == nil {
		if !anonymousOK {
			return Identity{}, fmt.Errorf("%w: user %q: no password file is configured and anonymous access is not allowed on this listener", ErrBadUserNameOrPassword, username)
		}
		return Identity{Username: username}, nil
	}
	if !hasPassword {
		return Identity{}, fmt.Errorf("%w: user %q: no password", ErrBadUserNameOrPassword, username)
	}
	k := a.key(username, password)
	now := a.now()
	if res, ok := a.good.get(k, t.gen, now); ok {
		a.cacheHits.Add(1)
		return res.id, res.err
	}
	if err := a.checkLimits(r, now); err != nil {
		return Identity{}, err
	}
	if res, ok := a.bad.get(k, t.gen, now); ok {
		a.cacheHits.Add(1)
		a.failed(r, res.err)
		return res.id, res.err
	}
	a.cacheMisses.Add(1)
	res, shared, err := a.flight.do(ctx, k, func() (result, bool) {
		return a.verify(ctx, t, k, username, password)
	})
	if err != nil {
		return Identity{}, err
	}
	if shared {
		a.shared.Add(1)
	}
	a.failed(r, res.err)
	return res.id, res.err
}

// checkJWT authenticates a request whose password is a JWT. A refused
// token counts as a failure like a wrong password.
func (a *Authenticator) checkJWT(r Request) (Identity, error) {
	if err := a.checkLimits(r, a.now()); err != nil {
		return Identity{}, err
	}
	a.verifications.Add(1)
	claims, t, err := a.jwt.verify(r.Password, r.Username, r.ClientID)
	if err != nil {
		a.failed(r, err)
		return Identity{}, err
	}
	id := Identity{Username: r.Username, Authenticated: true, Token: t}
	if id.Username == "" {
		id.Username, _ = claims["sub"].(string)
	}
	return id, nil
}

// checkLimits refuses a request whose address or user name is over its
// failure limit.
func (a *Authenticator) checkLimits(r Request, now time.Time) error {
	switch {
	case a.byAddr.blocked(addrKey(r.Addr), now):
		a.limited.Add(1)
		return fmt.Errorf("%w: address %s: more than %d failed authentications a minute", ErrTooManyFailures, addrKey(r.Addr), a.cfg.MaxFailuresPerAddress)
	case a.byUser.blocked(r.Username, now):
		a.limited.Add(1)
		return fmt.Errorf("%w: user %q: more than %d failed authentications a minute", ErrTooManyFailures, r.Username, a.cfg.MaxFailuresPerUsername)
	}
	return nil
}

// failed counts a refused credential against the request's address and
// user name.
func (a *Authenticator) failed(r Request, err error) {
	if !errors.Is(err, ErrBadUserNameOrPassword) {
		return
	}
	now := a.now()
	a.byAddr.fail(addrKey(r.Addr), now)
	a.byUser.fail(r.Username, now)
}

// verify computes one hash, holding one of the verification slots, and caches
// the result for t's generation. abandoned is true when ctx ended first.
func (a *Authenticator) verify(ctx context.Context, t *userTable, k cacheKey, username string, password []byte) (result, bool) {
	// Bounding concurrent hashes at GOMAXPROCS keeps a mass reconnect
	// finishing verifications (and filling the cache) in arrival order
	// instead of slowing all of them down together past the clients' timeouts.
	select {
	case a.slots <- struct{}{}:
	case <-ctx.Done():
		return result{err: ctx.Err()}, true
	}
	defer func() { <-a.slots }()
	a.verifications.Add(1)
	hash, known := t.file.Lookup(username)
	var r result
	if !known {
		// Spend the same time as for a known user, so that timing does not
		// tell which users exist.
		_ = passwd.Verify(a.dummy(), password)
		r.err = fmt.Errorf("%w: user %q: unknown user", ErrBadUserNameOrPassword, username)
	} else if err := passwd.Verify(hash, password); err != nil {
		if !errors.Is(err, passwd.ErrMismatch) {
			// Cannot happen for a file that loaded (every hash was
			// checked), but never treat it as success.
			return result{err: fmt.Errorf("%w: user %q: %v", ErrBadUserNameOrPassword, username, err)}, false // lint:nowrap the client learns bad user name or password only; the hash problem is log detail
		}
		r.err = fmt.Errorf("%w: user %q: wrong password", ErrBadUserNameOrPassword, username)
	} else {
		r.id = Identity{Username: username, Authenticated: true}
	}
	now := a.now()
	if r.err == nil {
		a.good.put(k, t.gen, r, now)
	} else {
		a.bad.put(k, t.gen, r, now)
	}
	return r, false
}

// key is the cache key of a username and password.
func (a *Authenticator) key(username string, password []byte) cacheKey {
	m := hmac.New(sha256.New, a.hmacKey[:])
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(username)))
	m.Write(n[:])
	m.Write([]byte(username))
	m.Write(password)
	var k cacheKey
	m.Sum(k[:0])
	return k
}

// dummy returns a hash of a random password with the configured algorithm
// and cost, made on first use.
func (a *Authenticator) dummy() string {
	a.dummyOnce.Do(func() {
		var pw [16]byte
		_, _ = rand.Read(pw[:])
		alg, err := passwd.ParseAlgorithm(a.cfg.Hash)
		if err != nil {
			alg = passwd.Bcrypt
		}
		h, err := passwd.Hash(alg, pw[:], passwd.Params{BcryptCost: a.cfg.BcryptCost, PBKDF2Iterations: a.cfg.PBKDF2Iterations})
		if err != nil {
			h, _ = passwd.Hash(passwd.Bcrypt, pw[:], passwd.Params{})
		}
		a.dummyHash = h
	})
	return a.dummyHash
}
