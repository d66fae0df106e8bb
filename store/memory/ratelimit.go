package memory

import (
	"context"
	"sync"
	"time"

	"github.com/nhsid/nhsid/internal/ratelimit"
)

// rateState holds rate limit and lockout state (ratelimit.Store), under
// its own lock.
type rateState struct {
	mu   sync.Mutex
	keys map[string]ratelimit.State
}

var _ ratelimit.Store = (*Store)(nil)

// RateIncr implements ratelimit.Store.
func (s *Store) RateIncr(_ context.Context, key string, now time.Time, window time.Duration) (ratelimit.State, error) {
	r := &s.rates
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		r.keys = map[string]ratelimit.State{}
	}
	st := r.keys[key]
	if st.Start.IsZero() || !st.Start.After(now.Add(-window)) {
		st.Count, st.Start = 0, now
	}
	st.Count++
	st.Last = now
	r.keys[key] = st
	return st, nil
}

// RateGet implements ratelimit.Store.
func (s *Store) RateGet(_ context.Context, key string) (ratelimit.State, error) {
	r := &s.rates
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[key], nil
}

// RateLock implements ratelimit.Store.
func (s *Store) RateLock(_ context.Context, key string, until, now time.Time) error {
	r := &s.rates
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		r.keys = map[string]ratelimit.State{}
	}
	st := r.keys[key]
	if st.Start.IsZero() {
		st.Start, st.Last = now, now
	}
	st.LockedUntil = until
	r.keys[key] = st
	return nil
}

// RateReset implements ratelimit.Store.
func (s *Store) RateReset(_ context.Context, key string) error {
	r := &s.rates
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.keys, key)
	return nil
}

// RatePurge implements ratelimit.Store.
func (s *Store) RatePurge(_ context.Context, before time.Time) (int64, error) {
	r := &s.rates
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for k, st := range r.keys {
		if st.Last.Before(before) && st.LockedUntil.Before(before) {
			delete(r.keys, k)
			n++
		}
	}
	return n, nil
}
