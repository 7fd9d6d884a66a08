package worker

import (
	"sync"
	"time"
)

// keyLocks serialises work on one API key within the process.
type keyLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	users int
}

func (k *keyLocks) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = make(map[string]*keyLock)
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()

	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// resultCache holds results that were decided but could not be stored, so
// a redelivery stores the same outcome instead of deleting again.
type resultCache struct {
	mu      sync.Mutex
	max     int
	ttl     time.Duration
	entries map[string]cachedResult
}

type cachedResult struct {
	v       *verdict
	expires time.Time
}

func newResultCache(max int, ttl time.Duration) *resultCache {
	return &resultCache{max: max, ttl: ttl, entries: make(map[string]cachedResult)}
}

func (c *resultCache) put(id string, v *verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if now.After(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			return // full of live entries: the redelivery decides again
		}
	}
	c.entries[id] = cachedResult{v: v, expires: now.Add(c.ttl)}
}

func (c *resultCache) take(id string) (*verdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok {
		return nil, false
	}
	delete(c.entries, id)
	return e.v, time.Now().Before(e.expires)
}
