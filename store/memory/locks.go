package memory

import (
	"context"
	"sync"
)

// WithLock runs fn while holding the named lock; see postgres.Store.WithLock.
func (s *Store) WithLock(ctx context.Context, name string, wait bool, fn func(context.Context) error) (bool, error) {
	v, _ := s.jobLocks.LoadOrStore(name, &sync.Mutex{})
	mu := v.(*sync.Mutex)
	if wait {
		mu.Lock()
	} else if !mu.TryLock() {
		return false, nil
	}
	defer mu.Unlock()
	return true, fn(ctx)
}
