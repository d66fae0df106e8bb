package audit

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Recorder records audit events. Both methods return only once the event
// is durable (committed); an error means it is not, and the request that
// depends on it must fail.
type Recorder interface {
	// Record appends e now, in the transaction carried by ctx if any.
	Record(ctx context.Context, e Event) error
	// RecordGrouped appends e together with the events of other concurrent
	// callers in one shared insert a few milliseconds later (group
	// commit). It is for read-only, high-rate events (introspection,
	// userinfo) where an insert per request would cost more than the
	// request.
	RecordGrouped(ctx context.Context, e Event) error
}

// Nop records nothing. It stands in for a nil Recorder.
type Nop struct{}

// Record implements Recorder.
func (Nop) Record(context.Context, Event) error { return nil }

// RecordGrouped implements Recorder.
func (Nop) RecordGrouped(context.Context, Event) error { return nil }

// OrNop returns r, or Nop when r is nil: packages call it on their optional
// Audit dependency.
func OrNop(r Recorder) Recorder {
	if r == nil {
		return Nop{}
	}
	return r
}

// Log is the Recorder over a Store.
type Log struct {
	store Store
	now   func() time.Time
	// window is how long a group's first caller waits for others before
	// flushing (zero: flush at once; batching then comes from load).
	window time.Duration

	mu       sync.Mutex
	pending  *group // gathering while a flush is in flight
	flushing bool
}

// group is one shared flush: its events, and done closed when err is set.
type group struct {
	events []Event
	done   chan struct{}
	err    error
}

// Options configure NewLog.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// GroupWindow: how long RecordGrouped's first caller waits to gather
	// others before a flush. Zero flushes at once; callers that arrive
	// during a flush share the next one, so batches grow with load and
	// an idle server adds no latency.
	GroupWindow time.Duration
}

// NewLog returns a Recorder writing to s.
func NewLog(s Store, o Options) *Log {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Log{store: s, now: o.Now, window: o.GroupWindow}
}

// prepare validates e and fills its defaults.
func (l *Log) prepare(ctx context.Context, e *Event) error {
	raw, err := e.normalise(ctx, l.now())
	if err != nil {
		return err
	}
	e.RawDetail = raw
	e.Seq = 0
	return nil
}

// Record implements Recorder.
func (l *Log) Record(ctx context.Context, e Event) error {
	if err := l.prepare(ctx, &e); err != nil {
		return fmt.Errorf("audit %s: %w", e.Type, err)
	}
	if _, err := l.store.AppendAudit(ctx, []Event{e}); err != nil {
		return fmt.Errorf("audit %s: %w", e.Type, err)
	}
	return nil
}

// RecordGrouped implements Recorder with group commit: at most one insert
// is in flight; callers arriving meanwhile join the pending group, which
// is inserted in one statement as soon as the flush in flight ends. Every
// caller waits for the flush that holds its event. No goroutine runs while
// the recorder is idle.
func (l *Log) RecordGrouped(ctx context.Context, e Event) error {
	if err := l.prepare(ctx, &e); err != nil {
		return fmt.Errorf("audit %s: %w", e.Type, err)
	}
	l.mu.Lock()
	if l.pending == nil {
		l.pending = &group{done: make(chan struct{})}
	}
	g := l.pending
	g.events = append(g.events, e)
	lead := !l.flushing
	if lead {
		l.flushing = true
	}
	l.mu.Unlock()
	if lead {
		if l.window > 0 {
			time.Sleep(l.window)
		}
		l.mu.Lock()
		l.pending = nil
		l.mu.Unlock()
		l.flush(g)
	}
	select {
	case <-g.done:
		if g.err != nil {
			return fmt.Errorf("audit %s (grouped): %w", e.Type, g.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit %s (grouped): %w", e.Type, ctx.Err())
	}
}

// flush inserts g, then hands the flush over to the group gathered
// meanwhile, if any.
func (l *Log) flush(g *group) {
	// A fresh context: one caller's cancellation must not fail the others'
	// events, and a caller's transaction (if any) is not theirs.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, g.err = l.store.AppendAudit(ctx, g.events)
	cancel()
	close(g.done)
	l.mu.Lock()
	next := l.pending
	l.pending = nil
	if next == nil {
		l.flushing = false
	}
	l.mu.Unlock()
	if next != nil {
		go l.flush(next)
	}
}

// Querier reads the trail. *Log implements it over its store, so a
// package holding only a Recorder can look back (for example, whether a
// person has used a client before) by asserting Querier.
type Querier interface {
	QueryAudit(ctx context.Context, q Query) (Page, error)
}

// QueryAudit implements Querier by querying the Log's store.
func (l *Log) QueryAudit(ctx context.Context, q Query) (Page, error) {
	return l.store.QueryAudit(ctx, q)
}
