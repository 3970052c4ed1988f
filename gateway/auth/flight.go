package auth

import (
	"context"
	"sync"
)

// flight makes concurrent verifications of the same credentials share one
// hash computation (like x/sync/singleflight, but the computation runs on the
// first caller's goroutine, so no goroutine is started, and a waiting caller
// can leave when its context ends).
type flight struct {
	mu struct {
		sync.Mutex
		calls map[cacheKey]*call
	}
}

type call struct {
	done chan struct{}
	res  result
	// abandoned is set when the leader gave up before computing (its
	// context ended while it waited for a verification slot); waiters then
	// try again instead of taking the leader's context error as theirs.
	abandoned bool
}

// do returns fn's result for k, running fn once for all concurrent callers
// with the same k. shared reports whether the result came from another
// caller's run. fn returns abandoned = true when it did not compute.
func (f *flight) do(ctx context.Context, k cacheKey, fn func() (r result, abandoned bool)) (r result, shared bool, err error) {
	for {
		f.mu.Lock()
		if c, ok := f.mu.calls[k]; ok {
			f.mu.Unlock()
			select {
			case <-c.done:
				if c.abandoned {
					continue
				}
				return c.res, true, nil
			case <-ctx.Done():
				return result{}, false, ctx.Err()
			}
		}
		if f.mu.calls == nil {
			f.mu.calls = make(map[cacheKey]*call)
		}
		c := &call{done: make(chan struct{})}
		f.mu.calls[k] = c
		f.mu.Unlock()

		f.lead(k, c, fn)
		if c.abandoned {
			return result{}, false, c.res.err
		}
		return c.res, false, nil
	}
}

// lead runs fn for c and always releases the waiters, even if fn panics (the
// panic then goes on to the connection's panic boundary; waiters retry).
func (f *flight) lead(k cacheKey, c *call, fn func() (result, bool)) {
	c.abandoned = true
	defer func() {
		f.mu.Lock()
		delete(f.mu.calls, k)
		f.mu.Unlock()
		close(c.done)
	}()
	c.res, c.abandoned = fn()
}
