package memory

import (
	"sort"
	"time"

	"github.com/nhsid/nhsid/store"
)

// schedule points at the fields that every back-channel delivery has: its
// ID and the times that decide when it is due and whether it is done.
type schedule struct {
	id                      *string
	next, delivered, failed *time.Time
	created                 *time.Time
}

// deliveryQueue is a back-channel logout queue of T (OIDC or SAML
// deliveries), keyed by ID; its owner's lock guards it. The zero value
// needs fields set.
type deliveryQueue[T any] struct {
	items  map[string]T
	fields func(*T) schedule
}

// norm is d with its times normalised like every time the store keeps.
func (q *deliveryQueue[T]) norm(d T) T {
	f := q.fields(&d)
	for _, t := range []*time.Time{f.created, f.next, f.delivered, f.failed} {
		*t = coreTime(*t)
	}
	return d
}

func (q *deliveryQueue[T]) enqueue(d T) error {
	if q.items == nil {
		q.items = map[string]T{}
	}
	id := *q.fields(&d).id
	if _, ok := q.items[id]; ok {
		return store.ErrExists
	}
	q.items[id] = q.norm(d)
	return nil
}

// claim returns up to limit due deliveries, earliest first, and leases
// them until leaseUntil.
func (q *deliveryQueue[T]) claim(now, leaseUntil time.Time, limit int) []T {
	now = coreTime(now)
	var due []T
	for _, d := range q.items {
		f := q.fields(&d)
		if f.delivered.IsZero() && f.failed.IsZero() && !f.next.After(now) {
			due = append(due, d)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		a, b := q.fields(&due[i]), q.fields(&due[j])
		if !a.next.Equal(*b.next) {
			return a.next.Before(*b.next)
		}
		return *a.id < *b.id
	})
	if limit > 0 && len(due) > limit {
		due = due[:limit]
	}
	for i := range due {
		f := q.fields(&due[i])
		*f.next = coreTime(leaseUntil)
		q.items[*f.id] = due[i]
	}
	return due
}

// update applies fn to the delivery id; it fails with store.ErrNotFound.
func (q *deliveryQueue[T]) update(id string, fn func(*T) error) (T, error) {
	d, ok := q.items[id]
	if !ok {
		var zero T
		return zero, store.ErrNotFound
	}
	if err := fn(&d); err != nil {
		var zero T
		return zero, err
	}
	*q.fields(&d).id = id
	d = q.norm(d)
	q.items[id] = d
	return d, nil
}

// purge drops the deliveries delivered or given up before before and
// returns how many.
func (q *deliveryQueue[T]) purge(before time.Time) int {
	n := 0
	for id, d := range q.items {
		f := q.fields(&d)
		if (!f.delivered.IsZero() && f.delivered.Before(before)) || (!f.failed.IsZero() && f.failed.Before(before)) {
			delete(q.items, id)
			n++
		}
	}
	return n
}
