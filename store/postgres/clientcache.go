package postgres

import (
	"sync"
	"time"
)

// clientCacheTTL bounds how long a replica may serve a client row it read
// before: a change made through this Store is seen at once, a change made
// by another replica within this time.
const clientCacheTTL = 2 * time.Second

// clientCache keeps recently read client rows. Every token request,
// introspection and userinfo call loads one or two clients; the profiles
// under load (docs/performance.md) showed those SELECTs as a fifth of the
// work of an introspection. Rows are cached as scanned and decoded afresh
// on every get, so callers never share a client.
type clientCache struct {
	mu  sync.RWMutex
	m   map[string]cachedClient
	now func() time.Time
}

type cachedClient struct {
	r       *clientRow // never modified once cached
	expires time.Time
}

func newClientCache() *clientCache {
	return &clientCache{m: map[string]cachedClient{}, now: time.Now}
}

// get returns the cached row, or nil. A nil cache is empty.
func (cc *clientCache) get(id string) *clientRow {
	if cc == nil {
		return nil
	}
	cc.mu.RLock()
	e, ok := cc.m[id]
	cc.mu.RUnlock()
	if !ok || !cc.now().Before(e.expires) {
		return nil
	}
	return e.r
}

func (cc *clientCache) put(r *clientRow) {
	if cc == nil {
		return
	}
	cc.mu.Lock()
	if len(cc.m) > 10000 {
		clear(cc.m) // bounded: a client flood only costs re-reads
	}
	cc.m[r.id] = cachedClient{r: r, expires: cc.now().Add(clientCacheTTL)}
	cc.mu.Unlock()
}

func (cc *clientCache) forget(id string) {
	if cc == nil {
		return
	}
	cc.mu.Lock()
	delete(cc.m, id)
	cc.mu.Unlock()
}
