package memory

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/federation/saml"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/store"
)

var (
	_ authn.ParticipantStore    = (*Store)(nil)
	_ authn.ExpiredSessionStore = (*Store)(nil)
	_ idp.LogoutDeliveryStore   = (*Store)(nil)
	_ saml.LogoutQueue          = (*Store)(nil)
)

// logoutState holds session participants and the back-channel logout
// queue, under its own lock. The zero value is ready.
type logoutState struct {
	mu           sync.Mutex
	participants map[string][]authn.SessionParticipant // by SID, oldest first
	deliveries   deliveryQueue[idp.LogoutDelivery]
	saml         deliveryQueue[saml.LogoutDelivery]
}

// queues returns l's delivery queues, ready; l.mu is held.
func (l *logoutState) queues() (*deliveryQueue[idp.LogoutDelivery], *deliveryQueue[saml.LogoutDelivery]) {
	if l.deliveries.fields == nil {
		l.deliveries.fields = func(d *idp.LogoutDelivery) schedule {
			return schedule{id: &d.ID, created: &d.CreatedAt, next: &d.NextAttemptAt, delivered: &d.DeliveredAt, failed: &d.FailedAt}
		}
		l.saml.fields = func(d *saml.LogoutDelivery) schedule {
			return schedule{id: &d.ID, created: &d.CreatedAt, next: &d.NextAttemptAt, delivered: &d.DeliveredAt, failed: &d.FailedAt}
		}
	}
	return &l.deliveries, &l.saml
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

// EnqueueLogoutDelivery implements idp.LogoutDeliveryStore.
func (s *Store) EnqueueLogoutDelivery(_ context.Context, d idp.LogoutDelivery) error {
	l := &s.logout
	l.mu.Lock()
	defer l.mu.Unlock()
	q, _ := l.queues()
	if err := q.enqueue(d); err != nil {
		return fmt.Errorf("enqueue logout delivery: %w", err)
	}
	return nil
}

// ClaimLogoutDeliveries implements idp.LogoutDeliveryStore.
func (s *Store) ClaimLogoutDeliveries(_ context.Context, now, leaseUntil time.Time, limit int) ([]idp.LogoutDelivery, error) {
	l := &s.logout
	l.mu.Lock()
	defer l.mu.Unlock()
	q, _ := l.queues()
	return q.claim(now, leaseUntil, limit), nil
}

// UpdateLogoutDelivery implements idp.LogoutDeliveryStore.
func (s *Store) UpdateLogoutDelivery(_ context.Context, id string, fn func(*idp.LogoutDelivery) error) (idp.LogoutDelivery, error) {
	l := &s.logout
	l.mu.Lock()
	defer l.mu.Unlock()
	q, _ := l.queues()
	d, err := q.update(id, fn)
	if errors.Is(err, store.ErrNotFound) {
		return d, fmt.Errorf("update logout delivery: %w", err)
	}
	return d, err
}

// GetLogoutDelivery implements idp.LogoutDeliveryStore.
func (s *Store) GetLogoutDelivery(_ context.Context, id string) (idp.LogoutDelivery, error) {
	l := &s.logout
	l.mu.Lock()
	defer l.mu.Unlock()
	q, _ := l.queues()
	d, ok := q.items[id]
	if !ok {
		return idp.LogoutDelivery{}, fmt.Errorf("get logout delivery: %w", store.ErrNotFound)
	}
	return d, nil
}

// EnqueueSAMLLogout implements saml.LogoutQueue.
func (s *Store) EnqueueSAMLLogout(_ context.Context, d saml.LogoutDelivery) error {
	l := &s.logout
	l.mu.Lock()
	defer l.mu.Unlock()
	_, q := l.queues()
	if err := q.enqueue(d); err != nil {
		return fmt.Errorf("enqueue saml logout: %w", err)
	}
	return nil
}

// ClaimSAMLLogouts implements saml.LogoutQueue.
func (s *Store) ClaimSAMLLogouts(_ context.Context, now, leaseUntil time.Time, limit int) ([]saml.LogoutDelivery, error) {
	l := &s.logout
	l.mu.Lock()
	defer l.mu.Unlock()
	_, q := l.queues()
	return q.claim(now, leaseUntil, limit), nil
}

// UpdateSAMLLogout implements saml.LogoutQueue.
func (s *Store) UpdateSAMLLogout(_ context.Context, id string, fn func(*saml.LogoutDelivery) error) (saml.LogoutDelivery, error) {
	l := &s.logout
	l.mu.Lock()
	defer l.mu.Unlock()
	_, q := l.queues()
	d, err := q.update(id, fn)
	if errors.Is(err, store.ErrNotFound) {
		return d, fmt.Errorf("update saml logout: %w", err)
	}
	return d, err
}

// PurgeExpiredSessionData deletes flows and challenges that expired
// before before, and logout deliveries (OIDC and SAML) delivered or given
// up before it.
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
	oidc, sq := l.queues()
	n += oidc.purge(before) + sq.purge(before)
	return n, nil
}
