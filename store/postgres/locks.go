package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
)

// WithLock runs fn while holding the session-level advisory lock named
// name, so that a background job (key rotation, sealing, GC) runs on one
// replica at a time. With wait false it returns (false, nil) at once when
// another replica holds the lock.
func (s *Store) WithLock(ctx context.Context, name string, wait bool, fn func(context.Context) error) (bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", name, translate(err))
	}
	defer conn.Release()
	h := fnv.New64a()
	h.Write([]byte("nhsid:" + name))
	key := int64(h.Sum64())
	if wait {
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
			return false, fmt.Errorf("lock %s: %w", name, translate(err))
		}
	} else {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
			return false, fmt.Errorf("lock %s: %w", name, translate(err))
		}
		if !ok {
			return false, nil
		}
	}
	defer func() {
		// A fresh context: the unlock must run even if ctx was cancelled.
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key); err != nil {
			// The connection is suspect; closing it drops the lock.
			_ = conn.Conn().Close(context.Background())
		}
	}()
	return true, fn(ctx)
}
