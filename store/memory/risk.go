package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nhsid/nhsid/policy"
)

// riskState holds sign-in risk profiles (policy.RiskStore), under its own
// lock. Profiles are kept encoded, so callers never share maps with it.
type riskState struct {
	mu       sync.Mutex
	profiles map[string][]byte
}

var _ policy.RiskStore = (*Store)(nil)

func (r *riskState) get(uid string) (policy.RiskProfile, error) {
	p := policy.RiskProfile{PersonUID: uid}
	if raw, ok := r.profiles[uid]; ok {
		if err := json.Unmarshal(raw, &p); err != nil {
			return p, fmt.Errorf("risk profile: %w", err)
		}
	}
	return p, nil
}

// GetRiskProfile implements policy.RiskStore.
func (s *Store) GetRiskProfile(_ context.Context, personUID string) (policy.RiskProfile, error) {
	r := &s.risk
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.get(personUID)
}

// UpdateRiskProfile implements policy.RiskStore.
func (s *Store) UpdateRiskProfile(_ context.Context, personUID string, fn func(*policy.RiskProfile) error) (policy.RiskProfile, error) {
	r := &s.risk
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := r.get(personUID)
	if err != nil {
		return p, err
	}
	if err := fn(&p); err != nil {
		return policy.RiskProfile{}, err
	}
	p.PersonUID = personUID
	raw, err := json.Marshal(p)
	if err != nil {
		return policy.RiskProfile{}, fmt.Errorf("risk profile: %w", err)
	}
	if r.profiles == nil {
		r.profiles = map[string][]byte{}
	}
	r.profiles[personUID] = raw
	// p was decoded afresh above, so the caller shares nothing with the store.
	return p, nil
}

// DeleteRiskProfilesBefore implements policy.RiskStore.
func (s *Store) DeleteRiskProfilesBefore(_ context.Context, before time.Time) (int, error) {
	r := &s.risk
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for uid := range r.profiles {
		p, err := r.get(uid)
		if err != nil || p.UpdatedAt.Before(before) {
			delete(r.profiles, uid)
			n++
		}
	}
	return n, nil
}
