package outbound

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// TestDrain: every claimed item is attempted once, at most parallel at a
// time; passes go on while they come back full; delivered items are
// counted and errors joined; a claim error ends the drain.
func TestDrain(t *testing.T) {
	ctx := context.Background()
	var (
		mu      sync.Mutex
		queue   []int
		claims  int
		running atomic.Int32
		most    atomic.Int32
	)
	for i := range 23 {
		queue = append(queue, i)
	}
	claim := func(_ context.Context, n int) ([]int, error) {
		mu.Lock()
		defer mu.Unlock()
		claims++
		n = min(n, len(queue))
		out := queue[:n:n]
		queue = queue[n:]
		return out, nil
	}
	seen := make([]atomic.Int32, 23)
	attempt := func(_ context.Context, i int) (bool, error) {
		now := running.Add(1)
		defer running.Add(-1)
		for {
			m := most.Load()
			if now <= m || most.CompareAndSwap(m, now) {
				break
			}
		}
		seen[i].Add(1)
		switch {
		case i%5 == 0:
			return false, errors.New("refused")
		case i%5 == 1:
			return false, nil // to be retried
		}
		return true, nil
	}
	n, err := Drain(ctx, 10, 3, claim, attempt)
	if n != 23-5-5 {
		t.Errorf("delivered %d, want 13", n)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 5 {
		t.Errorf("errors %v, want the 5 refusals", err)
	}
	if claims != 3 {
		t.Errorf("%d claims, want 3 (10, 10, then 3: short)", claims)
	}
	if m := most.Load(); m > 3 {
		t.Errorf("%d attempts at once, want at most 3", m)
	}
	for i := range seen {
		if c := seen[i].Load(); c != 1 {
			t.Errorf("item %d attempted %d times", i, c)
		}
	}

	bad := errors.New("database down")
	n, err = Drain(ctx, 10, 3, func(context.Context, int) ([]int, error) { return nil, bad }, attempt)
	if n != 0 || !errors.Is(err, bad) {
		t.Errorf("claim error: %d, %v", n, err)
	}
}
