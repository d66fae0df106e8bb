package memory

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nhsid/nhsid/federation/saml"
	"github.com/nhsid/nhsid/store"
)

var _ saml.Store = (*Store)(nil)

// samlState holds SAML service providers, seen request IDs and session
// participants, under its own mutex. The zero value is ready.
type samlState struct {
	mu           sync.Mutex
	sps          map[string]saml.ServiceProvider // by ID
	byEntity     map[string]string               // entity ID -> ID
	seen         map[[2]string]time.Time         // (entity, request ID) -> expiry
	participants map[string][]saml.Participant   // by SID
}

func (st *samlState) lazyInit() {
	if st.sps == nil {
		st.sps = map[string]saml.ServiceProvider{}
		st.byEntity = map[string]string{}
		st.seen = map[[2]string]time.Time{}
		st.participants = map[string][]saml.Participant{}
	}
}

func copySP(sp saml.ServiceProvider) (saml.ServiceProvider, error) {
	sp.MetadataXML = bytes.Clone(sp.MetadataXML)
	sp.ACS = slices.Clone(sp.ACS)
	sp.SLO = slices.Clone(sp.SLO)
	sp.Settings.AllowedRoles = slices.Clone(sp.Settings.AllowedRoles)
	sp.Settings.Attributes = maps.Clone(sp.Settings.Attributes)
	sp.CreatedAt = coreTime(sp.CreatedAt)
	sp.UpdatedAt = coreTime(sp.UpdatedAt)
	// Round-trip JSON-shaped fields as PostgreSQL does (nil vs empty).
	raw, err := json.Marshal(sp.Settings)
	if err != nil {
		return sp, fmt.Errorf("copy saml sp: %w", err)
	}
	var set saml.Settings
	if err := json.Unmarshal(raw, &set); err != nil {
		return sp, fmt.Errorf("copy saml sp: %w", err)
	}
	sp.Settings = set
	if len(sp.SLO) == 0 {
		sp.SLO = nil
	}
	return sp, nil
}

// CreateServiceProvider implements saml.Store.
func (s *Store) CreateServiceProvider(_ context.Context, sp saml.ServiceProvider) error {
	st := &s.saml
	st.mu.Lock()
	defer st.mu.Unlock()
	st.lazyInit()
	if _, ok := st.sps[sp.ID]; ok {
		return fmt.Errorf("create saml sp %s: %w", sp.ID, store.ErrExists)
	}
	if _, ok := st.byEntity[sp.EntityID]; ok {
		return fmt.Errorf("create saml sp %s: entity id: %w", sp.ID, store.ErrExists)
	}
	c, err := copySP(sp)
	if err != nil {
		return err
	}
	st.sps[sp.ID] = c
	st.byEntity[sp.EntityID] = sp.ID
	return nil
}

// GetServiceProvider implements saml.Store.
func (s *Store) GetServiceProvider(_ context.Context, id string) (saml.ServiceProvider, error) {
	st := &s.saml
	st.mu.Lock()
	defer st.mu.Unlock()
	st.lazyInit()
	sp, ok := st.sps[id]
	if !ok {
		return saml.ServiceProvider{}, fmt.Errorf("get saml sp %s: %w", id, store.ErrNotFound)
	}
	return copySP(sp)
}

// GetServiceProviderByEntityID implements saml.Store.
func (s *Store) GetServiceProviderByEntityID(_ context.Context, entityID string) (saml.ServiceProvider, error) {
	st := &s.saml
	st.mu.Lock()
	defer st.mu.Unlock()
	st.lazyInit()
	id, ok := st.byEntity[entityID]
	if !ok {
		return saml.ServiceProvider{}, fmt.Errorf("get saml sp by entity id: %w", store.ErrNotFound)
	}
	return copySP(st.sps[id])
}

// UpdateServiceProvider implements saml.Store.
func (s *Store) UpdateServiceProvider(_ context.Context, id string, fn func(*saml.ServiceProvider) error) (saml.ServiceProvider, error) {
	st := &s.saml
	st.mu.Lock()
	defer st.mu.Unlock()
	st.lazyInit()
	cur, ok := st.sps[id]
	if !ok {
		return saml.ServiceProvider{}, fmt.Errorf("update saml sp %s: %w", id, store.ErrNotFound)
	}
	sp, err := copySP(cur)
	if err != nil {
		return saml.ServiceProvider{}, err
	}
	if err := fn(&sp); err != nil {
		return saml.ServiceProvider{}, err
	}
	sp.ID, sp.EntityID = cur.ID, cur.EntityID
	c, err := copySP(sp)
	if err != nil {
		return saml.ServiceProvider{}, err
	}
	st.sps[id] = c
	return copySP(c)
}

// ListServiceProviders implements saml.Store.
func (s *Store) ListServiceProviders(_ context.Context, after string, limit int) ([]saml.ServiceProvider, error) {
	st := &s.saml
	st.mu.Lock()
	defer st.mu.Unlock()
	st.lazyInit()
	var out []saml.ServiceProvider
	for _, k := range pageKeys(st.sps, after, limit) {
		c, err := copySP(st.sps[k])
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// RememberRequestID implements saml.Store. Expired records are pruned on
// the way.
func (s *Store) RememberRequestID(_ context.Context, entityID, requestID string, expiresAt, now time.Time) error {
	st := &s.saml
	st.mu.Lock()
	defer st.mu.Unlock()
	st.lazyInit()
	key := [2]string{entityID, requestID}
	if exp, ok := st.seen[key]; ok && notExpired(exp, now) {
		return fmt.Errorf("remember saml request id: %w", store.ErrExists)
	}
	if len(st.seen) > 1024 {
		for k, exp := range st.seen {
			if !notExpired(exp, now) {
				delete(st.seen, k)
			}
		}
	}
	st.seen[key] = coreTime(expiresAt)
	return nil
}

// AddParticipant implements saml.Store.
func (s *Store) AddParticipant(_ context.Context, p saml.Participant) error {
	st := &s.saml
	st.mu.Lock()
	defer st.mu.Unlock()
	st.lazyInit()
	p.CreatedAt = coreTime(p.CreatedAt)
	list := st.participants[p.SID]
	for i := range list {
		if list[i].EntityID == p.EntityID {
			list[i].NameID, list[i].SessionIndex = p.NameID, p.SessionIndex
			return nil
		}
	}
	st.participants[p.SID] = append(list, p)
	return nil
}

// ListParticipants implements saml.Store.
func (s *Store) ListParticipants(_ context.Context, sid string) ([]saml.Participant, error) {
	st := &s.saml
	st.mu.Lock()
	defer st.mu.Unlock()
	st.lazyInit()
	out := slices.Clone(st.participants[sid])
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}
