package auth

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/auth/passwd"
)

// reconnectFile has 200 users with bcrypt cost 10 hashes; user%03d's password
// is secret-%03d. It is committed because making it costs as much CPU as the
// test itself.
const reconnectFile = "testdata/reconnect.passwd"

const (
	reconnectUsers  = 200
	reconnectRounds = 10
	// reconnectBound is the stated budget for 2,000 CONNECTs of 200 users
	// with bcrypt cost 10 on 2 cores: 200 hashes (about 50-60 ms each on an
	// idle core, so about 6 s) plus 1,800 cache hits (microseconds). Without
	// the cache it would be 2,000 hashes, about 60 s.
	reconnectBound = 15 * time.Second
)

// TestMassReconnect: a gateway failover makes every client reconnect, often
// several times; with the credential cache that costs one hash per user.
func TestMassReconnect(t *testing.T) {
	c := config.Default().Auth
	c.PasswordFile = reconnectFile
	if raceEnabled {
		// Same counts, cheap hashes: -race checks the concurrency, not the CPU.
		c.PasswordFile = filepath.Join(t.TempDir(), "passwd")
		f := &passwd.File{}
		for i := range reconnectUsers {
			h, err := passwd.Hash(passwd.Bcrypt, []byte(fmt.Sprintf("secret-%03d", i)), passwd.Params{BcryptCost: passwd.MinBcryptCost})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Set(fmt.Sprintf("user%03d", i), h); err != nil {
				t.Fatal(err)
			}
		}
		if err := passwd.WriteFile(c.PasswordFile, f); err != nil {
			t.Fatal(err)
		}
	}
	a, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if n := a.Stats().Users; n != reconnectUsers {
		t.Fatalf("%s has %d users, want %d", c.PasswordFile, n, reconnectUsers)
	}

	// The bound is 15 s, or 3 times the cost of 200 hashes on this machine
	// when it is slower or busier than expected (it stays far below the
	// 2,000 hashes an uncached gateway would compute).
	bound := reconnectBound
	if !raceEnabled {
		one := timeOneVerification(t, c.PasswordFile)
		expected := one * reconnectUsers / time.Duration(min(runtime.GOMAXPROCS(0), 2))
		bound = max(bound, 3*expected)
		t.Logf("one bcrypt cost 10 verification: %v; expected about %v for %d users; bound %v", one, expected, reconnectUsers, bound)
	}

	// 200 clients, each reconnecting 10 times, 64 connection handlers at a time.
	start := time.Now()
	type job struct{ user int }
	jobs := make(chan job)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for range 64 {
		wg.Go(func() {
			for j := range jobs {
				user := fmt.Sprintf("user%03d", j.user)
				pw := fmt.Sprintf("secret-%03d", j.user)
				id, err := a.Authenticate(context.Background(), false, user, []byte(pw), true)
				if err == nil && id != (Identity{Username: user, Authenticated: true}) {
					err = fmt.Errorf("identity %+v", id)
				}
				if err != nil {
					select {
					case errs <- fmt.Errorf("%s: %w", user, err):
					default:
					}
				}
			}
		})
	}
	for round := range reconnectRounds {
		for u := range reconnectUsers {
			jobs <- job{user: (u*7 + round) % reconnectUsers} // interleave users
		}
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	s := a.Stats()
	t.Logf("%d connects of %d users in %v: %+v", reconnectUsers*reconnectRounds, reconnectUsers, elapsed, s)
	if s.Verifications != reconnectUsers {
		t.Errorf("%d hash verifications, want exactly one per user (%d)", s.Verifications, reconnectUsers)
	}
	if s.CacheHits+s.Shared != reconnectUsers*(reconnectRounds-1) {
		t.Errorf("cache hits %d + shared %d, want %d", s.CacheHits, s.Shared, reconnectUsers*(reconnectRounds-1))
	}
	if elapsed > bound {
		t.Errorf("2,000 connects took %v, bound %v", elapsed, bound)
	}
}

// timeOneVerification is the fastest of three verifications of a hash of the file.
func timeOneVerification(t *testing.T, path string) time.Duration {
	f, err := passwd.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := f.Lookup("user000")
	best := time.Hour
	for range 3 {
		start := time.Now()
		if err := passwd.Verify(h, []byte("secret-000")); err != nil {
			t.Fatal(err)
		}
		best = min(best, time.Since(start))
	}
	return best
}

// BenchmarkAuthenticate compares a CONNECT answered by the cache with one
// that computes the hash, for bcrypt cost 10 and PBKDF2-SHA512 with 210,000
// iterations (the defaults).
func BenchmarkAuthenticate(b *testing.B) {
	for _, hash := range []struct {
		name string
		alg  passwd.Algorithm
	}{{"bcrypt-cost10", passwd.Bcrypt}, {"pbkdf2-sha512-i210000", passwd.PBKDF2}} {
		for _, cached := range []bool{true, false} {
			b.Run(fmt.Sprintf("hash=%s/cached=%v", hash.name, cached), func(b *testing.B) {
				c := config.Default().Auth
				c.PasswordFile = filepath.Join(b.TempDir(), "passwd")
				h, err := passwd.Hash(hash.alg, []byte("secret"), passwd.Params{})
				if err != nil {
					b.Fatal(err)
				}
				f := &passwd.File{}
				if err := f.Set("alice", h); err != nil {
					b.Fatal(err)
				}
				if err := passwd.WriteFile(c.PasswordFile, f); err != nil {
					b.Fatal(err)
				}
				if !cached {
					c.CacheSize = 0
				}
				a, err := New(c)
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				for b.Loop() {
					if _, err := a.Authenticate(ctx, false, "alice", []byte("secret"), true); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
