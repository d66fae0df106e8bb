package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nhsid/nhsid/policy"
)

// riskState holds sign-in risk profiles (policy.RiskStore), under its own
// lock. Profiles are kept encoded, so callers never share maps with it.
type riskState struct {
	mu       sync.Mutex
	profiles map[string][]byte
	versions map[string]uint64 // counts each profile's writes
}

var _ policy.RiskStore = (*Store)(nil)

func (r *riskState) get(uid string) (policy.RiskProfile, error) {
	p := policy.RiskProfile{PersonUID: uid}
	if raw, ok := r.profiles[uid]; ok {
		if err := json.Unmarshal(raw, &p); err != nil {
			return p, fmt.Errorf("risk profile: %w", err)
		}
		p.Version = strconv.FormatUint(r.versions[uid], 10)
	}
	return p, nil
}

// put applies fn to p and stores the result as uid's next version.
func (r *riskState) put(uid string, p policy.RiskProfile, fn func(*policy.RiskProfile) error) (policy.RiskProfile, error) {
	if err := fn(&p); err != nil {
		return policy.RiskProfile{}, err
	}
	p.PersonUID, p.Version = uid, ""
	raw, err := json.Marshal(p)
	if err != nil {
		return policy.RiskProfile{}, fmt.Errorf("risk profile: %w", err)
	}
	if r.profiles == nil {
		r.profiles, r.versions = map[string][]byte{}, map[string]uint64{}
	}
	r.profiles[uid] = raw
	r.versions[uid]++
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
	// p was decoded afresh, so the caller shares nothing with the store.
	return r.put(personUID, p, fn)
}

// UpdateRiskProfileFrom implements policy.RiskStore.
func (s *Store) UpdateRiskProfileFrom(_ context.Context, read policy.RiskProfile, fn func(*policy.RiskProfile) error) error {
	r := &s.risk
	r.mu.Lock()
	defer r.mu.Unlock()
	uid := read.PersonUID
	if read.Version == "" || read.Version != strconv.FormatUint(r.versions[uid], 10) {
		var err error
		if read, err = r.get(uid); err != nil {
			return err
		}
	}
	_, err := r.put(uid, read, fn)
	return err
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
			delete(r.profiles, uid) // its version counter stays: no ABA
			n++
		}
	}
	return n, nil
}
