package storetest

import (
	"context"
	"testing"
)

// Locker is a store that runs named jobs on one replica at a time.
type Locker interface {
	WithLock(ctx context.Context, name string, wait bool, fn func(context.Context) error) (bool, error)
}

// RunLockTests checks WithLock: a held lock makes a non-waiting caller
// skip, a waiting caller runs after release, and names are independent.
// a and b may be the same store or two stores on one database (two
// replicas).
func RunLockTests(t *testing.T, a, b Locker) {
	ctx := context.Background()
	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := a.WithLock(ctx, "job", true, func(context.Context) error {
			close(held)
			<-release
			return nil
		})
		done <- err
	}()
	<-held
	ran, err := b.WithLock(ctx, "job", false, func(context.Context) error { return nil })
	if err != nil || ran {
		t.Fatalf("second holder ran=%v err=%v while the lock was held", ran, err)
	}
	ran, err = b.WithLock(ctx, "other-job", false, func(context.Context) error { return nil })
	if err != nil || !ran {
		t.Fatalf("an unrelated lock did not run: ran=%v err=%v", ran, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ran, err = b.WithLock(ctx, "job", true, func(context.Context) error { return nil })
	if err != nil || !ran {
		t.Fatalf("after release: ran=%v err=%v", ran, err)
	}
}
