package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/packet"
)

// TestFailureLimits: an attacker sending distinct wrong passwords gets
// max_failures_per_address (or _per_username) hashes a minute, then is
// refused at once (ErrTooManyFailures: CONNACK 0x8A, 3.1.1 0x05) without
// hashing; other addresses and users are not affected, a verified
// credential in the cache still connects, and the bucket refills over the
// minute. Before, every wrong password cost a hash.
func TestFailureLimits(t *testing.T) {
	c := testConfig(t, map[string]string{"alice": "pw", "bob": "pw"})
	c.MaxFailuresPerAddress, c.MaxFailuresPerUsername = 3, 5
	a, clk := newTestAuthenticator(t, c)
	ctx := context.Background()
	attacker, other := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("198.51.100.1")
	check := func(addr netip.Addr, user, pw string) error {
		_, err := a.Check(ctx, Request{Addr: addr, Username: user, Password: []byte(pw), HasPassword: true})
		return err
	}
	// alice's good credentials are verified and cached first.
	if err := check(other, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := check(attacker, "alice", fmt.Sprintf("guess-%d", i)); !errors.Is(err, ErrBadUserNameOrPassword) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	before := a.Stats().Verifications
	for i := range 100 {
		err := check(attacker, "bob", fmt.Sprintf("more-%d", i))
		if !errors.Is(err, ErrTooManyFailures) {
			t.Fatalf("over the address limit: %v", err)
		}
		if code, _ := ConnackCode(err, packet.V5); code != byte(packet.Banned) {
			t.Fatalf("MQTT 5 code 0x%02X, want 0x8A", code)
		}
		if code, _ := ConnackCode(err, packet.V311); code != packet.ConnectRefusedNotAuthorized {
			t.Fatalf("3.1.1 code 0x%02X, want 0x05", code)
		}
	}
	if s := a.Stats(); s.Verifications != before || s.Limited != 100 {
		t.Fatalf("refusals over the limit hashed: %+v", s)
	}
	if err := check(attacker, "alice", "pw"); err != nil {
		t.Errorf("verified (cached) credentials from a limited address: %v", err)
	}
	if err := check(other, "bob", "pw"); err != nil {
		t.Errorf("another address: %v", err)
	}
	// Per user name: guesses from many addresses.
	for i := range 2 {
		addr := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		if err := check(addr, "alice", fmt.Sprintf("spray-%d", i)); !errors.Is(err, ErrBadUserNameOrPassword) {
			t.Fatalf("spray %d: %v", i, err)
		}
	}
	if err := check(netip.MustParseAddr("203.0.113.99"), "alice", "spray-x"); !errors.Is(err, ErrTooManyFailures) {
		t.Fatalf("over the user name limit: %v", err)
	}
	// A third of a minute gives the address one token back.
	clk.Advance(20 * time.Second)
	if err := check(attacker, "carol", "x"); !errors.Is(err, ErrBadUserNameOrPassword) {
		t.Fatalf("after the refill: %v", err)
	}
	if err := check(attacker, "carol", "y"); !errors.Is(err, ErrTooManyFailures) {
		t.Fatalf("the refilled token is used: %v", err)
	}
	// A full minute forgets the keys.
	clk.Advance(time.Minute)
	if err := check(attacker, "bob", "pw"); err != nil {
		t.Fatal(err)
	}
}

// TestFailureLimiterIsBounded: the limiter remembers at most size keys and
// forgets a key whose bucket refilled.
func TestFailureLimiterIsBounded(t *testing.T) {
	l := newFailureLimiter(2, 3)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 10 {
		l.fail(fmt.Sprint(i), now)
		l.fail(fmt.Sprint(i), now)
	}
	if l.len() != 3 {
		t.Fatalf("len = %d, want 3", l.len())
	}
	if !l.blocked("9", now) || l.blocked("0", now) {
		t.Error("the most recent keys are the ones kept")
	}
	if l.blocked("9", now.Add(time.Minute)) || l.len() != 2 {
		t.Errorf("a refilled key is forgotten: len %d", l.len())
	}
	var none *failureLimiter
	none.fail("x", now)
	if none.blocked("x", now) || newFailureLimiter(0, 10) != nil {
		t.Error("a zero limit limits nothing")
	}
}

func TestAddrKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":            "192.0.2.1",
		"::ffff:192.0.2.1":     "192.0.2.1",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::9":      "2001:db8:1:2::/64",
	} {
		if got := addrKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("addrKey(%s) = %s, want %s", in, got, want)
		}
	}
	if addrKey(netip.Addr{}) != "" {
		t.Error("an unknown address has no key")
	}
}
