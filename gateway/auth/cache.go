package auth

import (
	"container/list"
	"sync"
	"time"
)

// cacheKey is HMAC-SHA256(per-process key, len(username) | username | password):
// the cache never holds a password or anything an attacker could test guesses
// against without the process's key.
type cacheKey [32]byte

// result is the outcome of one verification.
type result struct {
	id  Identity
	err error
}

// credCache is a bounded LRU of verification results with a TTL. It belongs
// to one generation of the password file: get and put for another
// generation do nothing, so a verification that started against an older
// file can never fill the cache of a newer one.
type credCache struct {
	size int
	ttl  time.Duration
	mu   struct {
		sync.Mutex
		gen uint64
		ll  list.List // of *cacheEntry, most recently used first
		m   map[cacheKey]*list.Element
	}
}

type cacheEntry struct {
	key     cacheKey
	res     result
	expires time.Time
}

// newCredCache returns a cache, or nil (a cache that holds nothing) when size
// or ttl is not positive.
func newCredCache(size int, ttl time.Duration) *credCache {
	if size <= 0 || ttl <= 0 {
		return nil
	}
	c := &credCache{size: size, ttl: ttl}
	c.mu.m = make(map[cacheKey]*list.Element)
	return c
}

func (c *credCache) get(k cacheKey, gen uint64, now time.Time) (result, bool) {
	if c == nil {
		return result{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.mu.gen {
		return result{}, false
	}
	el, ok := c.mu.m[k]
	if !ok {
		return result{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.removeLocked(el)
		return result{}, false
	}
	c.mu.ll.MoveToFront(el)
	return e.res, true
}

func (c *credCache) put(k cacheKey, gen uint64, r result, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.mu.gen {
		return
	}
	if el, ok := c.mu.m[k]; ok {
		e := el.Value.(*cacheEntry)
		e.res, e.expires = r, now.Add(c.ttl)
		c.mu.ll.MoveToFront(el)
		return
	}
	for c.mu.ll.Len() >= c.size {
		c.removeLocked(c.mu.ll.Back())
	}
	c.mu.m[k] = c.mu.ll.PushFront(&cacheEntry{key: k, res: r, expires: now.Add(c.ttl)})
}

// reset empties the cache and moves it to generation gen.
func (c *credCache) reset(gen uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.gen = gen
	c.mu.ll.Init()
	clear(c.mu.m)
}

func (c *credCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.ll.Len()
}

func (c *credCache) removeLocked(el *list.Element) {
	c.mu.ll.Remove(el)
	delete(c.mu.m, el.Value.(*cacheEntry).key)
}
