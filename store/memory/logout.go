package memory

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/store"
)

var (
	_ authn.ParticipantStore    = (*Store)(nil)
	_ authn.ExpiredSessionStore = (*Store)(nil)
	_ idp.LogoutDeliveryStore   = (*Store)(nil)
)

// logoutState holds session participants and the back-channel logout
// queue, under its own lock. The zero value is ready.
type logoutState struct {
	mu           sync.Mutex
	participants map[string][]authn.SessionParticipant // by SID, oldest first
	deliveries   map[string]idp.LogoutDelivery
}

// AddSessionParticipant implements authn.ParticipantStore.
func (s *Store) AddSessionParticipant(_ context.Context, p authn.SessionParticipant) error {
	l := &s.logout
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.participants == nil {
		l.participants = map[string][]authn.SessionParticipant{}
	}
	for _, x := range l.participants[p.SID] {
		if x.Kind == p.Kind && x.PartyID == p.PartyID {
			return nil
		}
	}
	p.FirstAt = coreTime(p.FirstAt)
	l.participants[p.SID] = append(l.participants[p.SID], p)
	sort.SliceStable(l.participants[p.SID], func(i, j int) bool {
		return l.participants[p.SID][i].FirstAt.Before(l.participants[p.SID][j].FirstAt)
	})
	return nil
}

// ListSessionParticipants implements authn.ParticipantStore.
func (s *Store) ListSessionParticipants(_ context.Context, sid string) ([]authn.SessionParticipant, error) {
	l := &s.logout
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]authn.SessionParticipant(nil), l.participants[sid]...), nil
}

// ListExpiredSessions implements authn.ExpiredSessionStore.
func (s *Store) ListExpiredSessions(_ context.Context, now time.Time, limit int) ([]authn.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now = coreTime(now)
	var out []authn.Session
	for _, x := range s.core.sessions {
		if x.EndedAt.IsZero() && !x.ExpiresAt.IsZero() && !x.ExpiresAt.After(now) {
			out = append(out, copySession(x))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].ExpiresAt.Equal(out[j].ExpiresAt) {
			return out[i].ExpiresAt.Before(out[j].ExpiresAt)
		}
		return out[i].SID < out[j].SID
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func copyDelivery(d idp.LogoutDelivery) idp.LogoutDelivery {
	d.CreatedAt = coreTime(d.CreatedAt)
	d.NextAttemptAt = coreTime(d.NextAttemptAt)
	d.DeliveredAt = coreTime(d.DeliveredAt)
	d.FailedAt = coreTime(d.FailedAt)
	return d
}

// EnqueueLogoutDelivery implements idp.LogoutDeliveryStore.
func (s *Store) EnqueueLogoutDelivery(_ context.Context, d idp.LogoutDelivery) error {
	l := &s.logout
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.deliveries == nil {
		l.deliveries = map[string]idp.LogoutDelivery{}
	}
	if _, ok := l.deliveries[d.ID]; ok {
		return fmt.Errorf("enqueue logout delivery: %w", store.ErrExists)
	}
	l.deliveries[d.ID] = copyDelivery(d)
	return nil
}

// ClaimLogoutDeliveries implements idp.LogoutDeliveryStore.
func (s *Store) ClaimLogoutDeliveries(_ context.Context, now, leaseUntil time.Time, limit int) ([]idp.LogoutDelivery, error) {
	l := &s.logout
	l.mu.Lock()
	defer l.mu.Unlock()
	now = coreTime(now)
	var due []idp.LogoutDelivery
	for _, d := range l.deliveries {
		if d.DeliveredAt.IsZero() && d.FailedAt.IsZero() && !d.NextAttemptAt.After(now) {
			due = append(due, d)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		if !due[i].NextAttemptAt.Equal(due[j].NextAttemptAt) {
			return due[i].NextAttemptAt.Before(due[j].NextAttemptAt)
		}
		return due[i].ID < due[j].ID
	})
	if limit > 0 && len(due) > limit {
		due = due[:limit]
	}
	for i := range due {
		due[i].NextAttemptAt = coreTime(leaseUntil)
		l.deliveries[due[i].ID] = due[i]
	}
	return due, nil
}

// UpdateLogoutDelivery implements idp.LogoutDeliveryStore.
func (s *Store) UpdateLogoutDelivery(_ context.Context, id string, fn func(*idp.LogoutDelivery) error) (idp.LogoutDelivery, error) {
	l := &s.logout
	l.mu.Lock()
	defer l.mu.Unlock()
	d, ok := l.deliveries[id]
	if !ok {
		return idp.LogoutDelivery{}, fmt.Errorf("update logout delivery: %w", store.ErrNotFound)
	}
	if err := fn(&d); err != nil {
		return idp.LogoutDelivery{}, err
	}
	d.ID = id
	d = copyDelivery(d)
	l.deliveries[id] = d
	return d, nil
}

// GetLogoutDelivery implements idp.LogoutDeliveryStore.
func (s *Store) GetLogoutDelivery(_ context.Context, id string) (idp.LogoutDelivery, error) {
	l := &s.logout
	l.mu.Lock()
	defer l.mu.Unlock()
	d, ok := l.deliveries[id]
	if !ok {
		return idp.LogoutDelivery{}, fmt.Errorf("get logout delivery: %w", store.ErrNotFound)
	}
	return d, nil
}

// PurgeExpiredSessionData deletes flows and challenges that expired
// before before, and logout deliveries delivered or given up before it.
func (s *Store) PurgeExpiredSessionData(_ context.Context, before time.Time) (int, error) {
	before = coreTime(before)
	n := 0
	s.mu.Lock()
	for id, f := range s.core.flows {
		if !f.ExpiresAt.IsZero() && f.ExpiresAt.Before(before) {
			delete(s.core.flows, id)
			delete(s.core.flowSpent, id)
			n++
		}
	}
	for k, c := range s.core.challenges {
		if !c.expiresAt.IsZero() && c.expiresAt.Before(before) {
			delete(s.core.challenges, k)
			n++
		}
	}
	s.mu.Unlock()
	l := &s.logout
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, d := range l.deliveries {
		if (!d.DeliveredAt.IsZero() && d.DeliveredAt.Before(before)) || (!d.FailedAt.IsZero() && d.FailedAt.Before(before)) {
			delete(l.deliveries, id)
			n++
		}
	}
	return n, nil
}
