package postgres

import (
	"sync"
	"time"

	"github.com/nhsid/nhsid/idp"
)

// clientCacheTTL bounds how long a replica may serve a client row it read
// before: a change made through this Store is seen at once, a change made
// by another replica within this time.
const clientCacheTTL = 2 * time.Second

// clientCache keeps recently read clients. Every token request,
// introspection and userinfo call loads one or two clients; the profiles
// under load (docs/performance.md) showed those SELECTs as a fifth of the
// work of an introspection, and then decoding the cached rows' JSON (with
// their key sets) as a tenth. Clients are cached decoded and never
// modified; every get returns a Clone, so callers never share a client.
type clientCache struct {
	mu  sync.RWMutex
	m   map[string]cachedClient
	now func() time.Time
}

type cachedClient struct {
	c       *idp.Client // never modified once cached
	expires time.Time
}

func newClientCache() *clientCache {
	return &clientCache{m: map[string]cachedClient{}, now: time.Now}
}

// fresh returns the cached client, shared (never to be handed out), or
// nil. A nil cache is empty.
func (cc *clientCache) fresh(id string) *idp.Client {
	if cc == nil {
		return nil
	}
	cc.mu.RLock()
	e, ok := cc.m[id]
	cc.mu.RUnlock()
	if !ok || !cc.now().Before(e.expires) {
		return nil
	}
	return e.c
}

// get returns a copy of the cached client, or nil.
func (cc *clientCache) get(id string) *idp.Client { return cc.fresh(id).Clone() }

// has reports whether id is cached, without copying it.
func (cc *clientCache) has(id string) bool { return cc.fresh(id) != nil }

// put caches a copy of c.
func (cc *clientCache) put(c *idp.Client) {
	if cc == nil {
		return
	}
	cc.mu.Lock()
	if len(cc.m) > 10000 {
		clear(cc.m) // bounded: a client flood only costs re-reads
	}
	cc.m[c.ID] = cachedClient{c: c.Clone(), expires: cc.now().Add(clientCacheTTL)}
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
