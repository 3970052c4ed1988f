package session

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMemBackend(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var kicks []uint64
	b := NewMemBackend(func(_ string, guard uint64) { kicks = append(kicks, guard) }, false)

	r1, err := b.Open(ctx, OpenRequest{ClientID: "c", Username: "u", Expiry: 60, Now: now})
	if err != nil || r1.SessionPresent {
		t.Fatalf("first open: %+v %v", r1, err)
	}
	// Takeover: the holder is kicked, the session is present.
	r2, err := b.Open(ctx, OpenRequest{ClientID: "c", Username: "u", Expiry: 60, Now: now})
	if err != nil || !r2.SessionPresent || r2.Guard <= r1.Guard || len(kicks) != 1 || kicks[0] != r1.Guard {
		t.Fatalf("takeover: %+v %v kicks %v", r2, err, kicks)
	}
	// The old holder's guard is stale.
	if err := b.Disconnect(ctx, DisconnectRequest{ClientID: "c", Guard: r1.Guard, Expiry: 60, Now: now}); !errors.Is(err, ErrStaleGuard) {
		t.Fatalf("stale disconnect: %v", err)
	}
	// Another user name may not take the id over.
	if _, err := b.Open(ctx, OpenRequest{ClientID: "c", Username: "mallory", Now: now}); !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("cross identity: %v", err)
	}
	if err := b.Disconnect(ctx, DisconnectRequest{ClientID: "c", Guard: r2.Guard, Will: true, Expiry: 60, Now: now}); err != nil {
		t.Fatal(err)
	}
	if b.Wills() != 1 {
		t.Fatalf("wills %d", b.Wills())
	}
	// Resumed before expiry: present, no kick (not connected).
	r3, err := b.Open(ctx, OpenRequest{ClientID: "c", Username: "u", Expiry: 60, Now: now.Add(59 * time.Second)})
	if err != nil || !r3.SessionPresent || len(kicks) != 1 {
		t.Fatalf("resume: %+v %v", r3, err)
	}
	_ = b.Disconnect(ctx, DisconnectRequest{ClientID: "c", Guard: r3.Guard, Expiry: 60, Now: now})
	// After expiry: absent, and anyone may have the id.
	r4, err := b.Open(ctx, OpenRequest{ClientID: "c", Username: "other", Now: now.Add(61 * time.Second)})
	if err != nil || r4.SessionPresent {
		t.Fatalf("expired: %+v %v", r4, err)
	}
	// Expiry 0 ends the session at disconnect.
	_ = b.Disconnect(ctx, DisconnectRequest{ClientID: "c", Guard: r4.Guard, Now: now})
	if b.Sessions() != 0 {
		t.Fatalf("sessions %d, want 0", b.Sessions())
	}
}
