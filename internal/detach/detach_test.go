package detach

import (
	"context"
	"testing"
	"time"
)

type key struct{}

// TestContext: the detached context keeps the values and the deadline of
// its parent, outlives the parent's cancellation, and is bounded when the
// parent had no deadline.
func TestContext(t *testing.T) {
	deadline := time.Now().Add(time.Minute)
	parent, cancelParent := context.WithDeadline(context.WithValue(context.Background(), key{}, "v"), deadline)
	ctx, cancel := Context(parent)
	defer cancel()
	cancelParent()
	if err := ctx.Err(); err != nil {
		t.Fatalf("cancelled with its parent: %v", err)
	}
	if ctx.Value(key{}) != "v" {
		t.Error("lost its parent's values")
	}
	if dl, ok := ctx.Deadline(); !ok || !dl.Equal(deadline) {
		t.Errorf("deadline %v %v, want the parent's %v", dl, ok, deadline)
	}
	cancel()
	if ctx.Err() == nil {
		t.Error("cancel did not end it")
	}

	free, cancelFree := context.WithCancel(context.Background())
	cancelFree()
	before := time.Now()
	ctx, cancel = Context(free)
	defer cancel()
	if dl, ok := ctx.Deadline(); !ok || dl.Before(before.Add(Timeout)) || dl.After(time.Now().Add(Timeout)) {
		t.Errorf("without a parent deadline: %v %v, want Timeout from now", dl, ok)
	}
	if ctx.Err() != nil {
		t.Error("born cancelled")
	}
}

// BenchmarkContext is the cost the token endpoint pays per request.
func BenchmarkContext(b *testing.B) {
	parent, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := Context(parent)
		cancel()
		_ = ctx
	}
}
