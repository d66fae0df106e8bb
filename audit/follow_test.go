package audit_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/store/memory"
)

// TestFollow: Follow writes sealed records in chain order, waits for
// more, writes them as they are sealed (never an unsealed one), reports
// where to resume, and a run resumed there repeats nothing.
func TestFollow(t *testing.T) {
	ctx := context.Background()
	s := memory.New()
	l := audit.NewLog(s, audit.Options{})
	sealer := &audit.Sealer{Store: s}
	record := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := l.Record(ctx, audit.Event{Type: audit.TokenIssued, Client: "c", Detail: map[string]any{"i": i}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	record(0, 3)
	if _, err := sealer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	record(3, 4) // not sealed yet

	pr, pw := io.Pipe()
	fctx, cancel := context.WithCancel(ctx)
	saved := make(chan int64, 10)
	done := make(chan error, 1)
	go func() {
		_, err := audit.Follow(fctx, s, pw, audit.FollowOptions{Interval: 10 * time.Millisecond,
			Saved: func(next int64) error { saved <- next; return nil }})
		pw.Close()
		done <- err
	}()
	lines := bufio.NewScanner(pr)
	read := func(wantPos int64, wantI float64) {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("no line for position %d: %v", wantPos, lines.Err())
		}
		var l audit.FollowLine
		if err := json.Unmarshal(lines.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		if l.ChainPos != wantPos || l.Event == nil || l.Detail["i"] != wantI || len(l.ChainHash) != 64 {
			t.Fatalf("line %s, want position %d with i=%v", lines.Bytes(), wantPos, wantI)
		}
	}
	for i := range 3 {
		read(int64(i+1), float64(i))
	}
	if next := <-saved; next != 4 {
		t.Fatalf("saved %d after the first batch, want 4", next)
	}
	select {
	case next := <-saved:
		t.Fatalf("saved %d before the fourth record was sealed", next)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := sealer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	read(4, 3)
	if next := <-saved; next != 5 {
		t.Fatalf("saved %d, want 5", next)
	}
	cancel()
	go func(r io.Reader) { _, _ = io.Copy(io.Discard, r) }(pr)
	if err := <-done; err != nil {
		t.Fatalf("Follow after its context ended: %v", err)
	}

	// Resumed at the saved position: only what came after.
	record(4, 5)
	if _, err := sealer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	pr, pw = io.Pipe()
	fctx, cancel = context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, err := audit.Follow(fctx, s, pw, audit.FollowOptions{From: 5, Interval: 10 * time.Millisecond})
		pw.CloseWithError(err)
	}()
	lines = bufio.NewScanner(pr)
	read(5, 4)
}
