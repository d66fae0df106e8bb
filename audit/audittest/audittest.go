// Package audittest is an audit.Recorder for tests: it keeps the events it
// is given, in order.
package audittest

import (
	"context"
	"sync"

	"github.com/nhsid/nhsid/audit"
)

// Recorder keeps every event recorded. With Live set it refuses to record
// under a cancelled context, as the audit log's database writes do, so that
// a test can tell whether an event outlives its client.
type Recorder struct {
	Live bool

	mu     sync.Mutex
	events []audit.Event
}

// Record implements audit.Recorder.
func (r *Recorder) Record(ctx context.Context, e audit.Event) error {
	if r.Live {
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

// RecordGrouped implements audit.Recorder.
func (r *Recorder) RecordGrouped(ctx context.Context, e audit.Event) error { return r.Record(ctx, e) }

// Events returns the events recorded so far.
func (r *Recorder) Events() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.events...)
}

// Of returns the events of type t recorded so far.
func (r *Recorder) Of(t audit.Type) []audit.Event {
	var out []audit.Event
	for _, e := range r.Events() {
		if e.Type == t {
			out = append(out, e)
		}
	}
	return out
}
