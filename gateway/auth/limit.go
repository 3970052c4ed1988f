package auth

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// failureLimiter limits failed authentications per key (a source address or
// a user name) with a token bucket each: perMinute tokens, refilled evenly
// over a minute; a failure takes one, and a key with less than one token
// left is refused before any hashing. It remembers at most size keys, least
// recently used first out; a key whose bucket is full again is forgotten, so
// only keys that failed recently take room. A nil *failureLimiter limits
// nothing. It is safe for concurrent use.
type failureLimiter struct {
	perMinute float64
	size      int
	mu        struct {
		sync.Mutex
		ll list.List // of *bucket, most recently used first
		m  map[string]*list.Element
	}
}

type bucket struct {
	key    string
	tokens float64
	at     time.Time // when tokens was computed
}

// newFailureLimiter returns a limiter, or nil when perMinute or size is not
// positive (no limit).
func newFailureLimiter(perMinute, size int) *failureLimiter {
	if perMinute <= 0 || size <= 0 {
		return nil
	}
	l := &failureLimiter{perMinute: float64(perMinute), size: size}
	l.mu.m = make(map[string]*list.Element)
	return l
}

// refill brings b's tokens up to now.
func (l *failureLimiter) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.perMinute, b.tokens+d.Minutes()*l.perMinute)
		b.at = now
	}
}

// blocked reports whether key has used up its failures.
func (l *failureLimiter) blocked(key string, now time.Time) bool {
	if l == nil || key == "" {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.mu.m[key]
	if !ok {
		return false
	}
	b := el.Value.(*bucket)
	l.refill(b, now)
	if b.tokens >= l.perMinute {
		l.mu.ll.Remove(el)
		delete(l.mu.m, key)
		return false
	}
	return b.tokens < 1
}

// fail takes a token from key's bucket.
func (l *failureLimiter) fail(key string, now time.Time) {
	if l == nil || key == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.mu.m[key]; ok {
		b := el.Value.(*bucket)
		l.refill(b, now)
		b.tokens = max(0, b.tokens-1)
		l.mu.ll.MoveToFront(el)
		return
	}
	for l.mu.ll.Len() >= l.size {
		back := l.mu.ll.Back()
		l.mu.ll.Remove(back)
		delete(l.mu.m, back.Value.(*bucket).key)
	}
	l.mu.m[key] = l.mu.ll.PushFront(&bucket{key: key, tokens: l.perMinute - 1, at: now})
}

func (l *failureLimiter) len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.ll.Len()
}

// addrKey is the limiter key of a client address: the address, or for IPv6
// its /64 (one host usually holds a whole /64). "" for an unknown address.
func addrKey(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	a = a.Unmap()
	if a.Is6() {
		p, err := a.Prefix(64)
		if err == nil {
			return p.String()
		}
	}
	return a.String()
}
