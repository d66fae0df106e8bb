package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/store"
)

var _ audit.Store = (*Store)(nil)

// auditState is the audit trail. It has its own mutex so audit appends do
// not contend with the rest of the store. Appends are committed on return
// and numbered in order, so sealing in seq order never skips a record.
// Nothing here is ever updated or deleted. The zero value is ready.
type auditState struct {
	mu          sync.Mutex
	events      []audit.Event // events[i].Seq == i+1
	seals       []audit.Sealed
	checkpoints []audit.Checkpoint
	sealing     sync.Mutex // the sealer "advisory lock"
}

// AppendAudit implements audit.Store.
func (s *Store) AppendAudit(ctx context.Context, events []audit.Event) ([]audit.Event, error) {
	a := &s.audit
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]audit.Event, len(events))
	for i, e := range events {
		e.Seq = int64(len(a.events) + 1)
		e.Time = e.Time.UTC()
		e.RawDetail = append([]byte(nil), e.RawDetail...)
		if len(e.RawDetail) == 0 {
			e.RawDetail = nil
		}
		e.Detail = nil
		a.events = append(a.events, e)
		out[i] = copyAuditEvent(e)
	}
	return out, nil
}

// copyAuditEvent returns a copy of a stored event with Detail decoded from
// RawDetail (as the Postgres store does).
func copyAuditEvent(e audit.Event) audit.Event {
	e.RawDetail = append([]byte(nil), e.RawDetail...)
	if len(e.RawDetail) == 0 {
		e.RawDetail = nil
		return e
	}
	_ = json.Unmarshal(e.RawDetail, &e.Detail)
	return e
}

// QueryAudit implements audit.Store.
func (s *Store) QueryAudit(ctx context.Context, q audit.Query) (audit.Page, error) {
	q = q.Normalised()
	a := &s.audit
	a.mu.Lock()
	defer a.mu.Unlock()
	var p audit.Page
	start := max(q.Cursor, 0)
	for i := start; i < int64(len(a.events)); i++ {
		e := &a.events[i]
		if !q.Matches(e) {
			continue
		}
		if len(p.Events) == q.Limit {
			p.Next = p.Events[len(p.Events)-1].Seq
			break
		}
		p.Events = append(p.Events, copyAuditEvent(*e))
	}
	return p, nil
}

// FirstUnsealed implements audit.Store.
func (s *Store) FirstUnsealed(context.Context) (time.Time, error) {
	a := &s.audit
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seals) >= len(a.events) {
		return time.Time{}, nil
	}
	return a.events[len(a.seals)].Time, nil
}

// SealAudit implements audit.Store.
func (s *Store) SealAudit(ctx context.Context, limit int) (audit.SealBatch, error) {
	a := &s.audit
	if !a.sealing.TryLock() {
		return audit.SealBatch{}, nil
	}
	defer a.sealing.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := audit.GenesisHash
	if n := len(a.seals); n > 0 {
		prev = a.seals[n-1].Hash
	}
	var b audit.SealBatch
	next := len(a.seals) // memory seals records in seq order: seal i is record i
	for i := next; i < len(a.events) && b.Count < limit; i++ {
		e := a.events[i]
		h := audit.NextHash(prev, &e)
		pos := int64(len(a.seals) + 1)
		a.seals = append(a.seals, audit.Sealed{Pos: pos, Seq: e.Seq, Hash: h})
		if b.Count == 0 {
			b.FirstPos = pos
		}
		b.LastPos, b.Head = pos, h
		b.Count++
		prev = h
	}
	b.More = len(a.seals) < len(a.events)
	return b, nil
}

// AuditHead implements audit.Store.
func (s *Store) AuditHead(ctx context.Context) (audit.Head, error) {
	a := &s.audit
	a.mu.Lock()
	defer a.mu.Unlock()
	h := audit.Head{Hash: audit.GenesisHash, Unsealed: int64(len(a.events) - len(a.seals))}
	if n := len(a.seals); n > 0 {
		l := a.seals[n-1]
		h.Pos, h.Seq, h.Hash = l.Pos, l.Seq, append([]byte(nil), l.Hash...)
	}
	return h, nil
}

// SealedAudit implements audit.Store.
func (s *Store) SealedAudit(ctx context.Context, from int64, limit int) ([]audit.Sealed, error) {
	a := &s.audit
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Sealed
	for i := max(from-1, 0); i < int64(len(a.seals)) && len(out) < limit; i++ {
		l := a.seals[i]
		l.Hash = append([]byte(nil), l.Hash...)
		if l.Seq >= 1 && l.Seq <= int64(len(a.events)) {
			e := copyAuditEvent(a.events[l.Seq-1])
			l.Event = &e
		}
		out = append(out, l)
	}
	return out, nil
}

// AddAuditCheckpoint implements audit.Store.
func (s *Store) AddAuditCheckpoint(ctx context.Context, c audit.Checkpoint) error {
	a := &s.audit
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, have := range a.checkpoints {
		if have.Pos == c.Pos {
			return fmt.Errorf("add audit checkpoint %d: %w", c.Pos, store.ErrExists)
		}
	}
	if n := len(a.checkpoints); n > 0 && a.checkpoints[n-1].Pos > c.Pos {
		return fmt.Errorf("add audit checkpoint %d: behind %d: %w", c.Pos, a.checkpoints[n-1].Pos, store.ErrConflict)
	}
	c.Hash = append([]byte(nil), c.Hash...)
	c.Signature = append([]byte(nil), c.Signature...)
	c.Time = c.Time.UTC()
	a.checkpoints = append(a.checkpoints, c)
	return nil
}

// AuditCheckpoints implements audit.Store.
func (s *Store) AuditCheckpoints(ctx context.Context, from int64, limit int) ([]audit.Checkpoint, error) {
	a := &s.audit
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Checkpoint
	for _, c := range a.checkpoints {
		if c.Pos >= from && len(out) < limit {
			c.Hash = append([]byte(nil), c.Hash...)
			c.Signature = append([]byte(nil), c.Signature...)
			out = append(out, c)
		}
	}
	return out, nil
}
