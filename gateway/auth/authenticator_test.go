package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/auth/passwd"
	"github.com/stratamq/strata/gateway/packet"
)

func TestAuthenticate(t *testing.T) {
	users := map[string]string{"alice": "wonderland", "bob:ops": "b0b"}
	withFile := func(mode config.AnonymousMode) func(t *testing.T) config.Auth {
		return func(t *testing.T) config.Auth {
			c := testConfig(t, users)
			c.AllowAnonymous = mode
			return c
		}
	}
	noFile := func(mode config.AnonymousMode) func(t *testing.T) config.Auth {
		return func(t *testing.T) config.Auth {
			c := testConfig(t, nil)
			c.AllowAnonymous = mode
			return c
		}
	}
	const (
		ok       = 0
		badCreds = 1
		notAuth  = 2
	)
	cases := []struct {
		name     string
		cfg      func(t *testing.T) config.Auth
		loopback bool
		user, pw string
		hasPw    bool
		want     int
		wantID   Identity
	}{
		{"good password", withFile(config.AnonymousLoopback), false, "alice", "wonderland", true, ok, Identity{Username: "alice", Authenticated: true}},
		{"user name with a colon", withFile(config.AnonymousDeny), false, "bob:ops", "b0b", true, ok, Identity{Username: "bob:ops", Authenticated: true}},
		{"wrong password", withFile(config.AnonymousLoopback), true, "alice", "Wonderland", true, badCreds, Identity{}},
		{"empty password", withFile(config.AnonymousLoopback), true, "alice", "", true, badCreds, Identity{}},
		{"unknown user", withFile(config.AnonymousAllow), true, "mallory", "wonderland", true, badCreds, Identity{}},
		{"user without password", withFile(config.AnonymousAllow), true, "alice", "", false, badCreds, Identity{}},
		{"password without user", withFile(config.AnonymousAllow), true, "", "wonderland", true, badCreds, Identity{}},
		{"anonymous on loopback, loopback mode", withFile(config.AnonymousLoopback), true, "", "", false, ok, Identity{}},
		{"anonymous elsewhere, loopback mode", withFile(config.AnonymousLoopback), false, "", "", false, notAuth, Identity{}},
		{"anonymous elsewhere, allowed", withFile(config.AnonymousAllow), false, "", "", false, ok, Identity{}},
		{"anonymous on loopback, denied", withFile(config.AnonymousDeny), true, "", "", false, notAuth, Identity{}},
		{"user without file, anonymous allowed", noFile(config.AnonymousLoopback), true, "carol", "x", true, ok, Identity{Username: "carol", Authenticated: false}},
		{"user without file, anonymous not allowed", noFile(config.AnonymousLoopback), false, "carol", "x", true, badCreds, Identity{}},
		{"anonymous without file, default mode, remote", noFile(config.AnonymousLoopback), false, "", "", false, notAuth, Identity{}},
	}
	type codes struct{ v311, v5 byte }
	wantCodes := map[int]codes{ok: {0x00, 0x00}, badCreds: {0x04, 0x86}, notAuth: {0x05, 0x87}}
	sentinel := map[int]error{badCreds: ErrBadUserNameOrPassword, notAuth: ErrNotAuthorized}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := newTestAuthenticator(t, tc.cfg(t))
			// Twice: the second answer may come from the cache and must agree.
			for round := range 2 {
				id, err := a.Authenticate(context.Background(), tc.loopback, tc.user, []byte(tc.pw), tc.hasPw)
				if tc.want == ok && err != nil || tc.want != ok && !errors.Is(err, sentinel[tc.want]) {
					t.Fatalf("round %d: err = %v, want %v", round, err, sentinel[tc.want])
				}
				if id != tc.wantID {
					t.Errorf("round %d: identity = %+v, want %+v", round, id, tc.wantID)
				}
				if err != nil && strings.Contains(err.Error(), tc.pw) && tc.pw != "" {
					t.Errorf("error %q contains the password", err)
				}
				for _, v := range []packet.Version{packet.V31, packet.V311, packet.V5} {
					want := wantCodes[tc.want].v311
					if v == packet.V5 {
						want = wantCodes[tc.want].v5
					}
					if code, send := ConnackCode(err, v); code != want || !send {
						t.Errorf("round %d: ConnackCode(%v, %v) = %#x, %v; want %#x, true", round, err, v, code, send, want)
					}
				}
			}
		})
	}
}

func TestConnackCode(t *testing.T) {
	cases := []struct {
		err      error
		v        packet.Version
		code     byte
		send     bool
		fromCode packet.ReasonCode
	}{
		{nil, packet.V5, 0x00, true, packet.Success},
		{nil, packet.V311, 0x00, true, packet.Success},
		{fmt.Errorf("%w: x", ErrBadUserNameOrPassword), packet.V5, 0x86, true, packet.BadUserNameOrPassword},
		{fmt.Errorf("%w: x", ErrBadUserNameOrPassword), packet.V311, 0x04, true, packet.BadUserNameOrPassword},
		{ErrNotAuthorized, packet.V5, 0x87, true, packet.NotAuthorized},
		{ErrNotAuthorized, packet.V311, 0x05, true, packet.NotAuthorized},
		{ErrConnectionRateExceeded, packet.V5, 0x9F, true, packet.ConnectionRateExceeded},
		{ErrConnectionRateExceeded, packet.V311, 0, false, packet.ConnectionRateExceeded},
		{ErrConnectionRateExceeded, packet.V31, 0, false, packet.ConnectionRateExceeded},
		{context.Canceled, packet.V5, 0, false, packet.UnspecifiedError},
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), packet.V311, 0, false, packet.UnspecifiedError},
		{errors.New("boom"), packet.V5, 0x80, true, packet.UnspecifiedError},
		{errors.New("boom"), packet.V311, 0x03, true, packet.UnspecifiedError},
	}
	for _, tc := range cases {
		if code, send := ConnackCode(tc.err, tc.v); code != tc.code || send != tc.send {
			t.Errorf("ConnackCode(%v, %v) = %#x, %v; want %#x, %v", tc.err, tc.v, code, send, tc.code, tc.send)
		}
		if rc := ReasonCode(tc.err); rc != tc.fromCode {
			t.Errorf("ReasonCode(%v) = %v, want %v", tc.err, rc, tc.fromCode)
		}
		if rc := ReasonCode(tc.err); tc.v == packet.V5 && tc.send && !rc.AllowedIn(packet.CONNACK) {
			t.Errorf("%v is not a CONNACK reason code", rc)
		}
	}
}

func TestNewRefusesBadFiles(t *testing.T) {
	c := testConfig(t, map[string]string{"alice": "pw"})
	if err := os.WriteFile(c.PasswordFile, []byte("# users\nalice:$2b$10$short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("New with a malformed file = %v, want an error naming line 2", err)
	}
	c.PasswordFile += ".missing"
	if _, err := New(c); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New with a missing file = %v, want ErrNotExist", err)
	}
}

func TestCacheAndTTL(t *testing.T) {
	c := testConfig(t, map[string]string{"alice": "pw", "bob": "pw2"})
	c.CacheTTL = config.Duration(time.Minute)
	a, clk := newTestAuthenticator(t, c)
	ctx := context.Background()
	auth := func(user, pw string) error {
		_, err := a.Authenticate(ctx, false, user, []byte(pw), true)
		return err
	}
	for range 5 {
		if err := auth("alice", "pw"); err != nil {
			t.Fatal(err)
		}
		if err := auth("alice", "nope"); !errors.Is(err, ErrBadUserNameOrPassword) {
			t.Fatalf("wrong password: %v", err)
		}
	}
	s := a.Stats()
	if s.Verifications != 2 || s.CacheHits != 8 || s.CachedGood != 1 || s.CachedBad != 1 {
		t.Errorf("after 5 good and 5 bad checks: %+v, want 2 verifications, 8 hits, 1+1 entries", s)
	}
	clk.Advance(59 * time.Second)
	if err := auth("alice", "pw"); err != nil || a.Stats().Verifications != 2 {
		t.Errorf("within the TTL: err %v, %d verifications", err, a.Stats().Verifications)
	}
	clk.Advance(time.Minute)
	if err := auth("alice", "pw"); err != nil || a.Stats().Verifications != 3 {
		t.Errorf("after the TTL: err %v, %d verifications, want 3", err, a.Stats().Verifications)
	}
}

func TestCacheDisabled(t *testing.T) {
	for _, mutate := range []func(*config.Auth){
		func(c *config.Auth) { c.CacheSize = 0 },
		func(c *config.Auth) { c.CacheTTL = 0 },
	} {
		c := testConfig(t, map[string]string{"alice": "pw"})
		mutate(&c)
		a, _ := newTestAuthenticator(t, c)
		for range 3 {
			if _, err := a.Authenticate(context.Background(), false, "alice", []byte("pw"), true); err != nil {
				t.Fatal(err)
			}
		}
		if s := a.Stats(); s.Verifications != 3 || s.CachedGood != 0 {
			t.Errorf("cache off: %+v, want 3 verifications", s)
		}
	}
}

func TestCacheIsBounded(t *testing.T) {
	users := map[string]string{}
	for i := range 10 {
		users[fmt.Sprintf("u%d", i)] = "pw"
	}
	c := testConfig(t, users)
	c.CacheSize = 4
	a, _ := newTestAuthenticator(t, c)
	for i := range 10 {
		if _, err := a.Authenticate(context.Background(), false, fmt.Sprintf("u%d", i), []byte("pw"), true); err != nil {
			t.Fatal(err)
		}
		// Refusals go to their own, smaller cache.
		_, _ = a.Authenticate(context.Background(), false, fmt.Sprintf("u%d", i), []byte("bad"), true)
	}
	s := a.Stats()
	if s.CachedGood != 4 || s.CachedBad != 1 {
		t.Errorf("entries = %d good, %d bad; want 4 and 1", s.CachedGood, s.CachedBad)
	}
	// The most recent users are the ones kept.
	if _, err := a.Authenticate(context.Background(), false, "u9", []byte("pw"), true); err != nil || a.Stats().Verifications != s.Verifications {
		t.Errorf("u9 should be cached: err %v", err)
	}
	if _, err := a.Authenticate(context.Background(), false, "u0", []byte("pw"), true); err != nil || a.Stats().Verifications != s.Verifications+1 {
		t.Errorf("u0 should have been evicted: err %v", err)
	}
}

func TestReloadOnChangeClearsCache(t *testing.T) {
	c := testConfig(t, map[string]string{"alice": "old", "bob": "bob"})
	a, clk := newTestAuthenticator(t, c)
	ctx := context.Background()
	check := func(user, pw string, want error) {
		t.Helper()
		_, err := a.Authenticate(ctx, false, user, []byte(pw), true)
		if want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Fatalf("%s/%s: err = %v, want %v", user, pw, err, want)
		}
	}
	check("alice", "old", nil)
	check("bob", "bob", nil)
	if s := a.Stats(); s.CachedGood != 2 || s.Users != 2 {
		t.Fatalf("stats %+v", s)
	}

	// mqttpasswd-style rewrite: new password for alice, bob deleted, carol added.
	writeUsers(t, c.PasswordFile, passwd.Bcrypt, map[string]string{"alice": "new", "carol": "carol"})
	// Within the check interval the old users (and cache) still answer.
	check("alice", "old", nil)
	clk.Advance(DefaultCheckInterval)
	check("alice", "old", ErrBadUserNameOrPassword)
	if s := a.Stats(); s.Reloads != 1 || s.Users != 2 || s.CachedGood != 0 || s.LastReloadError != nil {
		t.Errorf("after the reload: %+v, want 1 reload, 2 users, empty good cache", s)
	}
	check("alice", "new", nil)
	check("bob", "bob", ErrBadUserNameOrPassword)
	check("carol", "carol", nil)

	// A broken file keeps the users in force, empties the cache and says why.
	if err := os.WriteFile(c.PasswordFile, append(mustRead(t, c.PasswordFile), "dave\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultCheckInterval)
	before := a.Stats().Verifications
	check("alice", "new", nil)
	s := a.Stats()
	if s.LastReloadError == nil || !strings.Contains(s.LastReloadError.Error(), "line 3") || s.Users != 2 || s.Verifications != before+1 {
		t.Errorf("after a bad edit: %+v, want the error naming line 3, 2 users, a fresh verification", s)
	}
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("Reload() = %v, want the line 3 error", err)
	}

	// Fixed in place: an explicit Reload picks it up at once.
	writeUsers(t, c.PasswordFile, passwd.PBKDF2, map[string]string{"alice": "newer"})
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	check("alice", "newer", nil)
	check("carol", "carol", ErrBadUserNameOrPassword)
	if s := a.Stats(); s.LastReloadError != nil || s.Users != 1 {
		t.Errorf("after the fix: %+v", s)
	}

	// A file that disappears keeps the users.
	if err := os.Remove(c.PasswordFile); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultCheckInterval)
	check("alice", "newer", nil)
	if s := a.Stats(); !errors.Is(s.LastReloadError, os.ErrNotExist) {
		t.Errorf("after removal: LastReloadError = %v", s.LastReloadError)
	}
}

// A verification that started against the old file must not fill the cache
// of the new one.
func TestStaleVerificationIsNotCached(t *testing.T) {
	c := newCredCache(10, time.Minute)
	c.reset(1)
	now := time.Now()
	var k cacheKey
	c.reset(2) // the file changed while a verification for generation 1 ran
	c.put(k, 1, result{id: Identity{Username: "alice", Authenticated: true}}, now)
	if _, ok := c.get(k, 2, now); ok || c.len() != 0 {
		t.Error("a result of generation 1 went into the cache of generation 2")
	}
	c.put(k, 2, result{id: Identity{Username: "alice", Authenticated: true}}, now)
	if _, ok := c.get(k, 1, now); ok {
		t.Error("generation 1 read generation 2's entry")
	}
	if _, ok := c.get(k, 2, now); !ok {
		t.Error("generation 2's entry is missing")
	}
}

func TestConcurrentChecksShareOneVerification(t *testing.T) {
	c := testConfig(t, nil)
	c.PasswordFile = t.TempDir() + "/passwd"
	f := &passwd.File{}
	h, err := passwd.Hash(passwd.Bcrypt, []byte("pw"), passwd.Params{BcryptCost: 8}) // slow enough to overlap
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Set("alice", h); err != nil {
		t.Fatal(err)
	}
	if err := passwd.WriteFile(c.PasswordFile, f); err != nil {
		t.Fatal(err)
	}
	a, _ := newTestAuthenticator(t, c)
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			<-start
			_, err := a.Authenticate(context.Background(), false, "alice", []byte("pw"), true)
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if s := a.Stats(); s.Verifications != 1 {
		t.Errorf("50 concurrent checks of the same credentials: %d verifications, want 1 (%+v)", s.Verifications, s)
	}
}

func TestWaiterLeavesOnContextEnd(t *testing.T) {
	c := testConfig(t, map[string]string{"alice": "pw"})
	a, _ := newTestAuthenticator(t, c)
	// Occupy every verification slot.
	for range cap(a.slots) {
		a.slots <- struct{}{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := a.Authenticate(ctx, false, "alice", []byte("pw"), true)
		done <- err
	}()
	// A second caller with the same credentials waits on the first.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	done2 := make(chan error)
	go func() {
		_, err := a.Authenticate(ctx2, false, "alice", []byte("pw"), true)
		done2 <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader: err = %v, want context.Canceled", err)
	}
	if code, send := ConnackCode(context.Canceled, packet.V5); send {
		t.Errorf("a canceled check should close, got CONNACK %#x", code)
	}
	// Free the slots: the follower takes over and verifies.
	for range cap(a.slots) {
		<-a.slots
	}
	if err := <-done2; err != nil {
		t.Fatalf("follower: %v", err)
	}
}
