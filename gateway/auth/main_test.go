package auth

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/auth/passwd"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is a settable clock for the TTL and check-interval tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fastParams make test hashes cheap; the hash format is the same.
var fastParams = passwd.Params{BcryptCost: passwd.MinBcryptCost, PBKDF2Iterations: 1000}

// writeUsers writes a password file with users (name -> password) hashed with alg.
func writeUsers(t testing.TB, path string, alg passwd.Algorithm, users map[string]string) {
	t.Helper()
	f := &passwd.File{}
	for u, pw := range users {
		h, err := passwd.Hash(alg, []byte(pw), fastParams)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Set(u, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := passwd.WriteFile(path, f); err != nil {
		t.Fatal(err)
	}
}

// testConfig is the default auth config with a password file of users in a
// temporary directory (none when users is nil), and cheap dummy hashes.
func testConfig(t testing.TB, users map[string]string) config.Auth {
	t.Helper()
	c := config.Default().Auth
	c.BcryptCost = passwd.MinBcryptCost
	c.PBKDF2Iterations = 1000
	if users != nil {
		c.PasswordFile = filepath.Join(t.TempDir(), "passwd")
		writeUsers(t, c.PasswordFile, passwd.PBKDF2, users)
	}
	return c
}

// newTestAuthenticator returns an Authenticator on a fake clock.
func newTestAuthenticator(t testing.TB, c config.Auth) (*Authenticator, *fakeClock) {
	t.Helper()
	a, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock()
	a.now = clk.Now
	return a, clk
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
