package memory

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nhsid/nhsid/onboarding"
	"github.com/nhsid/nhsid/store"
)

var _ onboarding.Store = (*Store)(nil)

// onboardingState holds sign-ups and applications under its own lock; the
// zero value is ready.
type onboardingState struct {
	mu      sync.Mutex
	signups map[string]onboarding.Signup
	apps    map[string][]byte // JSON: a deep copy on every read and write
}

func (o *onboardingState) init() {
	if o.signups == nil {
		o.signups = map[string]onboarding.Signup{}
		o.apps = map[string][]byte{}
	}
}

// CreateSignup implements onboarding.Store.
func (s *Store) CreateSignup(_ context.Context, su onboarding.Signup) error {
	o := &s.onboarding
	o.mu.Lock()
	defer o.mu.Unlock()
	o.init()
	k := hex.EncodeToString(su.TokenHash)
	if _, ok := o.signups[k]; ok {
		return fmt.Errorf("create signup: %w", store.ErrExists)
	}
	su.TokenHash = slices.Clone(su.TokenHash)
	o.signups[k] = su
	return nil
}

// TakeSignup implements onboarding.Store.
func (s *Store) TakeSignup(_ context.Context, tokenHash []byte, now time.Time) (onboarding.Signup, error) {
	o := &s.onboarding
	o.mu.Lock()
	defer o.mu.Unlock()
	o.init()
	k := hex.EncodeToString(tokenHash)
	su, ok := o.signups[k]
	if !ok || !now.Before(su.ExpiresAt) {
		return onboarding.Signup{}, fmt.Errorf("take signup: %w", store.ErrNotFound)
	}
	delete(o.signups, k)
	return su, nil
}

func decodeApp(b []byte) (onboarding.Application, error) {
	var a onboarding.Application
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("decode application: %w", err)
	}
	return a, nil
}

// CreateApplication implements onboarding.Store.
func (s *Store) CreateApplication(_ context.Context, a onboarding.Application) error {
	o := &s.onboarding
	o.mu.Lock()
	defer o.mu.Unlock()
	o.init()
	if _, ok := o.apps[a.ID]; ok {
		return fmt.Errorf("create application %s: %w", a.ID, store.ErrExists)
	}
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("create application: %w", err)
	}
	o.apps[a.ID] = b
	return nil
}

// GetApplication implements onboarding.Store.
func (s *Store) GetApplication(_ context.Context, id string) (onboarding.Application, error) {
	o := &s.onboarding
	o.mu.Lock()
	defer o.mu.Unlock()
	o.init()
	b, ok := o.apps[id]
	if !ok {
		return onboarding.Application{}, fmt.Errorf("get application %s: %w", id, store.ErrNotFound)
	}
	return decodeApp(b)
}

// UpdateApplication implements onboarding.Store.
func (s *Store) UpdateApplication(_ context.Context, id string, fn func(*onboarding.Application) error) (onboarding.Application, error) {
	o := &s.onboarding
	o.mu.Lock()
	defer o.mu.Unlock()
	o.init()
	b, ok := o.apps[id]
	if !ok {
		return onboarding.Application{}, fmt.Errorf("update application %s: %w", id, store.ErrNotFound)
	}
	a, err := decodeApp(b)
	if err != nil {
		return a, err
	}
	integrator := a.IntegratorUID
	if err := fn(&a); err != nil {
		return onboarding.Application{}, err
	}
	a.ID, a.IntegratorUID = id, integrator
	nb, err := json.Marshal(a)
	if err != nil {
		return onboarding.Application{}, fmt.Errorf("update application: %w", err)
	}
	o.apps[id] = nb
	return decodeApp(nb)
}

// ListApplications implements onboarding.Store.
func (s *Store) ListApplications(_ context.Context, f onboarding.Filter) ([]onboarding.Application, error) {
	o := &s.onboarding
	o.mu.Lock()
	defer o.mu.Unlock()
	o.init()
	var out []onboarding.Application
	for _, b := range o.apps {
		a, err := decodeApp(b)
		if err != nil {
			return nil, err
		}
		if f.IntegratorUID != "" && a.IntegratorUID != f.IntegratorUID {
			continue
		}
		if len(f.Statuses) > 0 && !slices.Contains(f.Statuses, a.Status) {
			continue
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}
