package jobs

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestEvery: a job runs when woken and on its interval, its errors are
// reported, and it stops when its context ends.
func TestEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wake := make(chan struct{})
	reported := make(chan error, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Every(ctx, 50*time.Millisecond, wake, func(context.Context) error {
			return errors.New("boom")
		}, func(err error) { reported <- err })
	}()
	wake <- struct{}{} // runs now, not at the next tick
	// The woken run's error, then the interval's. A run still going when
	// the context ends reports nothing, so both are awaited first.
	for i := range 2 {
		select {
		case err := <-reported:
			if err == nil || err.Error() != "boom" {
				t.Fatalf("run %d reported %v", i+1, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d errors reported, want 2", i)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not stop when its context ended")
	}
}

type fakeLocker struct {
	held  bool
	calls []string
}

func (f *fakeLocker) WithLock(ctx context.Context, name string, wait bool, fn func(context.Context) error) (bool, error) {
	f.calls = append(f.calls, name)
	if f.held && !wait {
		return false, nil
	}
	return true, fn(ctx)
}

// TestLocked: a job runs under the store's lock when it has one, is
// skipped when another replica holds it and it may not wait, and runs at
// once with a store that cannot lock.
func TestLocked(t *testing.T) {
	ctx := context.Background()
	ran := 0
	fn := func(context.Context) error { ran++; return nil }
	l := &fakeLocker{}
	if err := Locked(ctx, l, "gc", false, fn); err != nil || ran != 1 || len(l.calls) != 1 || l.calls[0] != "gc" {
		t.Fatalf("under the lock: err %v, ran %d, calls %v", err, ran, l.calls)
	}
	l.held = true
	if err := Locked(ctx, l, "gc", false, fn); err != nil || ran != 1 {
		t.Fatalf("lock held elsewhere: err %v, ran %d", err, ran)
	}
	if err := Locked(ctx, struct{}{}, "gc", false, fn); err != nil || ran != 2 {
		t.Fatalf("store without locks: err %v, ran %d", err, ran)
	}
	want := errors.New("failed")
	if err := Locked(ctx, &fakeLocker{}, "gc", true, func(context.Context) error { return want }); !errors.Is(err, want) {
		t.Fatalf("error of the job: %v", err)
	}
}
