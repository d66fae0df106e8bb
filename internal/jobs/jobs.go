// Package jobs runs nhsid's background jobs: on a schedule (Every), and on
// one replica at a time where the store can lock a named job (Locked).
// The session sweeper, the GC, the rate-limit and risk-profile purges,
// key rotation and the back-channel logout queues all run through it.
package jobs

import (
	"context"
	"time"
)

// Locker is a store that runs a named job on one replica at a time
// (store/postgres: an advisory lock; store/memory: a mutex).
type Locker interface {
	// WithLock runs fn holding the lock name. With wait false, a lock held
	// elsewhere skips fn and reports false.
	WithLock(ctx context.Context, name string, wait bool, fn func(context.Context) error) (bool, error)
}

// Locked runs fn under store's job lock name when store is a Locker, and
// at once when it is not. With wait false, a job another replica is
// running is skipped (nil error).
func Locked(ctx context.Context, store any, name string, wait bool, fn func(context.Context) error) error {
	l, ok := store.(Locker)
	if !ok {
		return fn(ctx)
	}
	_, err := l.WithLock(ctx, name, wait, fn)
	return err
}

// Every runs fn every interval until ctx ends, and also at once whenever
// wake fires (nil: never). An error of fn goes to onErr unless ctx has
// ended meanwhile.
func Every(ctx context.Context, interval time.Duration, wake <-chan struct{}, fn func(context.Context) error, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			onErr(err)
		}
	}
}
