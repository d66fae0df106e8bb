package memory

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

var _ policy.RBACStore = (*Store)(nil)

// rbacState holds the role catalogue, positions and identity checks.
type rbacState struct {
	catalogue     *policy.Index
	positions     map[string]policy.Position // by RoleID
	personOrgs    map[string]string          // uid + "\x00" + org -> person_orgid
	orgIDs        map[string]bool
	verifications map[string][]policy.Verification // by uid
}

func (r *rbacState) init() {
	r.catalogue = policy.NewIndex(policy.Catalogue{})
	r.positions = map[string]policy.Position{}
	r.personOrgs = map[string]string{}
	r.orgIDs = map[string]bool{}
	r.verifications = map[string][]policy.Verification{}
}

func (s *Store) rbacState() *rbacState {
	if s.rbac.positions == nil {
		s.rbac.init()
	}
	return &s.rbac
}

func cloneList(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	return slices.Clone(in)
}

func copyCatalogue(c policy.Catalogue) policy.Catalogue {
	out := policy.Catalogue{}
	for _, r := range c.JobRoles {
		r.DefaultActivities = cloneList(r.DefaultActivities)
		out.JobRoles = append(out.JobRoles, r)
	}
	for _, a := range c.Activities {
		a.Includes = cloneList(a.Includes)
		out.Activities = append(out.Activities, a)
	}
	out.Workgroups = slices.Clone(c.Workgroups)
	out.AreasOfWork = slices.Clone(c.AreasOfWork)
	if len(out.Workgroups) == 0 {
		out.Workgroups = nil
	}
	if len(out.AreasOfWork) == 0 {
		out.AreasOfWork = nil
	}
	return out
}

// PutCatalogue implements policy.RBACStore.
func (s *Store) PutCatalogue(_ context.Context, c policy.Catalogue) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rbacState()
	merged := r.catalogue.Catalogue().Merge(copyCatalogue(c))
	r.catalogue = policy.NewIndex(merged)
	return nil
}

// GetCatalogue implements policy.RBACStore.
func (s *Store) GetCatalogue(_ context.Context) (policy.Catalogue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyCatalogue(s.rbacState().catalogue.Catalogue()), nil
}

// EnsurePersonOrgID implements policy.RBACStore.
func (s *Store) EnsurePersonOrgID(_ context.Context, uid, orgCode, candidate string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rbacState()
	k := uid + "\x00" + orgCode
	if id, ok := r.personOrgs[k]; ok {
		return id, nil
	}
	if r.orgIDs[candidate] {
		return "", fmt.Errorf("person_orgid %s: %w", candidate, store.ErrExists)
	}
	r.personOrgs[k] = candidate
	r.orgIDs[candidate] = true
	return candidate, nil
}

func copyPosition(p policy.Position) policy.Position {
	p.ActivityCodes = cloneList(p.ActivityCodes)
	p.WorkgroupCodes = cloneList(p.WorkgroupCodes)
	p.AreaOfWorkCodes = cloneList(p.AreaOfWorkCodes)
	p.StartsAt = coreTime(p.StartsAt)
	p.EndsAt = coreTime(p.EndsAt)
	p.CreatedAt = coreTime(p.CreatedAt)
	p.ApprovedAt = coreTime(p.ApprovedAt)
	p.EndedAt = coreTime(p.EndedAt)
	p.OrgName = ""
	return p
}

// CreatePosition implements policy.RBACStore.
func (s *Store) CreatePosition(_ context.Context, p policy.Position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rbacState()
	if _, ok := r.positions[p.RoleID]; ok {
		return fmt.Errorf("create position %s: %w", p.RoleID, store.ErrExists)
	}
	r.positions[p.RoleID] = copyPosition(p)
	return nil
}

// GetPosition implements policy.RBACStore.
func (s *Store) GetPosition(_ context.Context, roleID string) (policy.Position, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.rbacState().positions[roleID]
	if !ok {
		return policy.Position{}, fmt.Errorf("get position %s: %w", roleID, store.ErrNotFound)
	}
	return copyPosition(p), nil
}

// UpdatePosition implements policy.RBACStore.
func (s *Store) UpdatePosition(_ context.Context, roleID string, fn func(*policy.Position) error) (policy.Position, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rbacState()
	cur, ok := r.positions[roleID]
	if !ok {
		return policy.Position{}, fmt.Errorf("update position %s: %w", roleID, store.ErrNotFound)
	}
	p := copyPosition(cur)
	if err := fn(&p); err != nil {
		return policy.Position{}, err
	}
	p.RoleID, p.OrgID, p.PersonUID, p.OrgCode = cur.RoleID, cur.OrgID, cur.PersonUID, cur.OrgCode
	p = copyPosition(p)
	r.positions[roleID] = p
	return copyPosition(p), nil
}

// ListPositions implements policy.RBACStore: oldest first (CreatedAt, then
// RoleID), with OrgName filled.
func (s *Store) ListPositions(_ context.Context, uid string) ([]policy.Position, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rbacState()
	var out []policy.Position
	for _, p := range r.positions {
		if p.PersonUID == uid {
			c := copyPosition(p)
			c.OrgName = s.core.orgs[p.OrgCode].Name
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].RoleID < out[j].RoleID
	})
	return out, nil
}

// ListPositionsOf implements policy.RBACStore.
func (s *Store) ListPositionsOf(ctx context.Context, uids []string) (map[string][]policy.Position, error) {
	out := map[string][]policy.Position{}
	for _, uid := range uids {
		ps, err := s.ListPositions(ctx, uid)
		if err != nil {
			return nil, err
		}
		if len(ps) > 0 {
			out[uid] = ps
		}
	}
	return out, nil
}

// CountLivePositions implements policy.RBACStore.
func (s *Store) CountLivePositions(_ context.Context, roleCodes []string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.rbacState().positions {
		if p.EndedAt.IsZero() && slices.Contains(roleCodes, p.RoleCode) {
			n++
		}
	}
	return n, nil
}

func copyVerification(v policy.Verification) policy.Verification {
	v.Evidence = cloneList(v.Evidence)
	v.VerifiedOn = coreTime(v.VerifiedOn)
	v.RecordedAt = coreTime(v.RecordedAt)
	return v
}

// AddVerification implements policy.RBACStore.
func (s *Store) AddVerification(_ context.Context, v policy.Verification) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rbacState()
	r.verifications[v.PersonUID] = append(r.verifications[v.PersonUID], copyVerification(v))
	return nil
}

// ListVerifications implements policy.RBACStore.
func (s *Store) ListVerifications(_ context.Context, uid string) ([]policy.Verification, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []policy.Verification
	for _, v := range s.rbacState().verifications[uid] {
		out = append(out, copyVerification(v))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].RecordedAt.Before(out[j].RecordedAt) })
	return out, nil
}
