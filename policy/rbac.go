package policy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nhsid/nhsid/store"
)

// ErrUnsupported means the configured store cannot keep RBAC data.
var ErrUnsupported = errors.New("policy: store does not implement RBACStore")

func (s *Service) rbac() (RBACStore, error) {
	if s.RBAC != nil {
		return s.RBAC, nil
	}
	if r, ok := s.Store.(RBACStore); ok {
		return r, nil
	}
	return nil, ErrUnsupported
}

func (s *Service) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// Catalogue returns the stored catalogue and its index.
//
// The result is shared for catalogueTTL: callers must not modify it. Role
// claims need the index on every token and userinfo call, and reading and
// indexing the whole catalogue each time dominated their cost. An import
// through this Service is seen at once; one on another replica within
// catalogueTTL.
func (s *Service) Catalogue(ctx context.Context) (Catalogue, *Index, error) {
	now := time.Now()
	if c, idx, ok := s.catalogue.get(now); ok {
		return c, idx, nil
	}
	st, err := s.rbac()
	if err != nil {
		return Catalogue{}, nil, err
	}
	c, err := st.GetCatalogue(ctx)
	if err != nil {
		return Catalogue{}, nil, fmt.Errorf("catalogue: %w", err)
	}
	idx := NewIndex(c)
	s.catalogue.put(now, c, idx)
	return c, idx, nil
}

// catalogueTTL is how long a read catalogue is reused.
const catalogueTTL = 2 * time.Second

type catalogueCache struct {
	mu  sync.Mutex
	at  time.Time
	c   Catalogue
	idx *Index
}

func (k *catalogueCache) get(now time.Time) (Catalogue, *Index, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.idx == nil || now.Sub(k.at) >= catalogueTTL || now.Before(k.at) {
		return Catalogue{}, nil, false
	}
	return k.c, k.idx, true
}

func (k *catalogueCache) put(now time.Time, c Catalogue, idx *Index) {
	k.mu.Lock()
	k.at, k.c, k.idx = now, c, idx
	k.mu.Unlock()
}

// forget drops the cached catalogue (after an import).
func (k *catalogueCache) forget() {
	k.mu.Lock()
	k.idx = nil
	k.mu.Unlock()
}

// ImportCatalogue parses data (JSON, or CSV when csvFormat) and merges it
// into the stored catalogue. Only operators maintain the national
// catalogue.
func (s *Service) ImportCatalogue(ctx context.Context, actor Actor, data []byte, csvFormat bool) (Catalogue, error) {
	if !actor.Operator {
		return Catalogue{}, forbidden("Only operators can import the role catalogue.")
	}
	st, err := s.rbac()
	if err != nil {
		return Catalogue{}, err
	}
	base, err := st.GetCatalogue(ctx)
	if err != nil {
		return Catalogue{}, fmt.Errorf("import catalogue: %w", err)
	}
	var c Catalogue
	if csvFormat {
		c, err = ParseCatalogueCSV(data, base)
	} else {
		c, err = ParseCatalogueJSON(data, base)
	}
	if err != nil {
		return Catalogue{}, err
	}
	s.catalogue.forget()
	if err := st.PutCatalogue(ctx, c); err != nil {
		return Catalogue{}, fmt.Errorf("import catalogue: %w", err)
	}
	s.catalogue.forget()
	return c, nil
}

// AuthorityOf computes actor's authority now.
func (s *Service) AuthorityOf(ctx context.Context, actor Actor) (*Authority, error) {
	return s.authorityFor(ctx, actor)
}

// authorityFor is AuthorityOf for a check at the organisations orgs: the
// organisation tree it holds has them, if they exist.
func (s *Service) authorityFor(ctx context.Context, actor Actor, orgs ...string) (*Authority, error) {
	_, idx, err := s.Catalogue(ctx)
	if err != nil {
		return nil, err
	}
	if actor.Operator || actor.UID == "" {
		return NewAuthority(actor, nil, idx, nil, s.now()), nil
	}
	st, _ := s.rbac()
	ps, err := st.ListPositions(ctx, actor.UID)
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	for _, p := range ps {
		orgs = append(orgs, p.OrgCode)
	}
	parents, err := s.orgParents(ctx, orgs...)
	if err != nil {
		return nil, err
	}
	return NewAuthority(actor, ps, idx, parents, s.now()), nil
}

// orgTree caches the organisation tree (code to parent code), which every
// RA action consults and which holds every organisation: reading it for
// each check read the whole table once per person an RA search looked
// at. Organisations are never re-parented or deleted, so a cached tree
// can only lack organisations created since it was read (on another
// replica, or here: CreateOrganisation drops it); orgParents reads it
// again when asked for one it lacks, at most once per orgTreeRetry.
type orgTree struct {
	mu      sync.Mutex
	parents map[string]string // never changed once read
	readAt  time.Time
}

// orgTreeRetry spaces out readings of the tree for organisations that do
// not exist.
const orgTreeRetry = time.Second

// orgParents returns the organisation tree, with every code of need that
// exists.
func (s *Service) orgParents(ctx context.Context, need ...string) (map[string]string, error) {
	t := &s.orgs
	t.mu.Lock()
	defer t.mu.Unlock()
	now := s.now()
	if t.parents != nil && (hasOrgs(t.parents, need) || (!now.Before(t.readAt) && now.Sub(t.readAt) < orgTreeRetry)) {
		return t.parents, nil
	}
	orgs, err := s.Store.ListOrganisations(ctx, "", 0)
	if err != nil {
		return nil, fmt.Errorf("organisations: %w", err)
	}
	out := make(map[string]string, len(orgs))
	for _, o := range orgs {
		out[o.Code] = o.ParentCode
	}
	t.parents, t.readAt = out, now
	return out, nil
}

// hasOrgs reports whether tree has every code in codes ("" needs none).
func hasOrgs(tree map[string]string, codes []string) bool {
	for _, c := range codes {
		if _, ok := tree[c]; !ok && c != "" {
			return false
		}
	}
	return true
}

// dropOrgTree makes the next check read the organisation tree again.
func (s *Service) dropOrgTree() {
	s.orgs.mu.Lock()
	s.orgs.parents = nil
	s.orgs.mu.Unlock()
}

// CheckPerson decides whether actor may perform action on the person uid:
// the person must have a live position in an organisation within the
// actor's scope. A person with no live position (just created, or a
// leaver) may be acted on by any RA whose role allows the action.
func (s *Service) CheckPerson(ctx context.Context, actor Actor, action Action, uid string) error {
	if actor.Operator {
		return nil
	}
	auth, err := s.AuthorityOf(ctx, actor)
	if err != nil {
		return err
	}
	return s.CheckPersonWith(ctx, auth, action, uid)
}

// CheckPersonWith is CheckPerson with the actor's authority already worked
// out (AuthorityOf), for checking many people in one request: the RA
// console's search checks each person it finds, and working out the
// authority each time read every organisation once per person.
func (s *Service) CheckPersonWith(ctx context.Context, auth *Authority, action Action, uid string) error {
	st, _ := s.rbac()
	ps, err := st.ListPositions(ctx, uid)
	if err != nil {
		return fmt.Errorf("check person: %w", err)
	}
	if auth, err = s.knowingOrgsOf(ctx, auth, ps); err != nil {
		return err
	}
	return checkPersonWith(auth, action, uid, ps)
}

// CheckPeopleWith is CheckPersonWith for many people at once (a page of
// the RA console's search): one look-up of all their positions, and at
// most one of the organisation tree. It returns, by UID, nil for each
// person auth may act on and the refusal (ErrForbidden) for each other;
// an error means it could not decide.
func (s *Service) CheckPeopleWith(ctx context.Context, auth *Authority, action Action, uids []string) (map[string]error, error) {
	st, err := s.rbac()
	if err != nil {
		return nil, err
	}
	byPerson, err := st.ListPositionsOf(ctx, uids)
	if err != nil {
		return nil, fmt.Errorf("check people: %w", err)
	}
	var all []Position
	for _, ps := range byPerson {
		all = append(all, ps...)
	}
	if auth, err = s.knowingOrgsOf(ctx, auth, all); err != nil {
		return nil, err
	}
	out := make(map[string]error, len(uids))
	for _, uid := range uids {
		out[uid] = checkPersonWith(auth, action, uid, byPerson[uid])
	}
	return out, nil
}

// knowingOrgsOf returns auth, with the organisation tree read again if it
// lacks an organisation of ps (one created since auth was worked out).
func (s *Service) knowingOrgsOf(ctx context.Context, auth *Authority, ps []Position) (*Authority, error) {
	if auth.Actor.Operator {
		return auth, nil
	}
	orgs := make([]string, 0, len(ps))
	for _, p := range ps {
		orgs = append(orgs, p.OrgCode)
	}
	if hasOrgs(auth.parents, orgs) {
		return auth, nil
	}
	parents, err := s.orgParents(ctx, orgs...)
	if err != nil {
		return nil, err
	}
	fresh := *auth
	fresh.parents = parents
	return &fresh, nil
}

func checkPersonWith(auth *Authority, action Action, uid string, ps []Position) error {
	var first error
	live := 0
	for _, p := range ps {
		if !p.EndedAt.IsZero() {
			continue
		}
		live++
		err := auth.Check(action, p.OrgCode, "", uid)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	if live == 0 {
		return auth.Check(action, "", "", uid)
	}
	return first
}

// CreatePersonAs creates a person on behalf of actor, acting for orgCode
// (empty: any organisation where the actor may create people).
func (s *Service) CreatePersonAs(ctx context.Context, actor Actor, orgCode string, p Person) (Person, error) {
	auth, err := s.authorityFor(ctx, actor, strings.ToUpper(orgCode))
	if err != nil {
		return p, err
	}
	if err := auth.Check(ActCreatePerson, strings.ToUpper(orgCode), "", ""); err != nil {
		return p, err
	}
	return s.CreatePerson(ctx, p)
}

// PositionInput is a requested position.
type PositionInput struct {
	OrgCode         string
	RoleCode        string
	ActivityCodes   []string
	WorkgroupCodes  []string
	AreaOfWorkCodes []string
	// StartsAt zero means now; EndsAt zero means open-ended.
	StartsAt time.Time
	EndsAt   time.Time
}

// AssignPosition gives the person uid a position, as actor. Without
// activity codes the job role's default activities apply. An RA Manager
// position waits for a second approver, except the first one created by
// an operator, which is marked Bootstrap.
func (s *Service) AssignPosition(ctx context.Context, actor Actor, uid string, in PositionInput) (Position, error) {
	st, err := s.rbac()
	if err != nil {
		return Position{}, err
	}
	_, idx, err := s.Catalogue(ctx)
	if err != nil {
		return Position{}, err
	}
	now := s.now().UTC()
	in.OrgCode = strings.ToUpper(strings.TrimSpace(in.OrgCode))
	in.RoleCode = strings.TrimSpace(in.RoleCode)
	var probs []string
	person, err := s.Store.GetPerson(ctx, uid)
	if errors.Is(err, store.ErrNotFound) {
		return Position{}, fmt.Errorf("assign position: %w", err)
	} else if err != nil {
		return Position{}, fmt.Errorf("assign position: %w", err)
	}
	if person.Status != StatusActive {
		probs = append(probs, "uid: the account is closed")
	}
	if person.Integrator {
		probs = append(probs, "uid: an integrator account cannot hold positions")
	}
	if _, err := s.Store.GetOrganisation(ctx, in.OrgCode); errors.Is(err, store.ErrNotFound) {
		probs = append(probs, "org_code: no such organisation")
	} else if err != nil {
		return Position{}, fmt.Errorf("assign position: %w", err)
	}
	role, ok := idx.Roles[in.RoleCode]
	if !ok {
		probs = append(probs, "role_code: not in the role catalogue")
	}
	if len(in.ActivityCodes) == 0 {
		in.ActivityCodes = role.DefaultActivities
	}
	for _, list := range []struct {
		name  string
		codes []string
		known func(string) bool
	}{
		{"activity_codes", in.ActivityCodes, func(c string) bool { _, ok := idx.Activities[c]; return ok }},
		{"workgroup_codes", in.WorkgroupCodes, func(c string) bool { _, ok := idx.Workgroups[c]; return ok }},
		{"aow_codes", in.AreaOfWorkCodes, func(c string) bool { _, ok := idx.AreasOfWork[c]; return ok }},
	} {
		if len(list.codes) > maxListLen {
			probs = append(probs, fmt.Sprintf("%s: at most %d", list.name, maxListLen))
			continue
		}
		for _, c := range list.codes {
			if !list.known(c) {
				probs = append(probs, fmt.Sprintf("%s: unknown code %q", list.name, clip(c)))
			}
		}
	}
	if in.StartsAt.IsZero() {
		in.StartsAt = now
	}
	if !in.EndsAt.IsZero() && !in.EndsAt.After(in.StartsAt) {
		probs = append(probs, "end: must be after start")
	}
	if len(probs) > 0 {
		return Position{}, &InvalidError{Problems: probs}
	}
	auth, err := s.authorityFor(ctx, actor, in.OrgCode)
	if err != nil {
		return Position{}, err
	}
	if err := auth.Check(ActAssignPosition, in.OrgCode, in.RoleCode, uid); err != nil {
		return Position{}, err
	}
	p := Position{
		PersonUID: uid, OrgCode: in.OrgCode, RoleCode: in.RoleCode,
		ActivityCodes: dedupe(in.ActivityCodes), WorkgroupCodes: dedupe(in.WorkgroupCodes), AreaOfWorkCodes: dedupe(in.AreaOfWorkCodes),
		StartsAt: in.StartsAt.UTC(), EndsAt: in.EndsAt.UTC(), CreatedBy: actor.Name(), CreatedAt: now,
	}
	if p.EndsAt.Equal(time.Time{}.UTC()) {
		p.EndsAt = time.Time{}
	}
	if role.RALevel == RAManager {
		n, err := st.CountLivePositions(ctx, s.managerRoles(idx))
		if err != nil {
			return Position{}, fmt.Errorf("assign position: %w", err)
		}
		if actor.Operator && n == 0 {
			p.Bootstrap, p.ApprovedBy, p.ApprovedAt = true, actor.Name(), now
		} else {
			p.PendingApproval = true
		}
	}
	for attempt := 0; ; attempt++ {
		cand, err := NewUID(s.rand())
		if err != nil {
			return Position{}, err
		}
		p.OrgID, err = st.EnsurePersonOrgID(ctx, uid, p.OrgCode, cand)
		if errors.Is(err, store.ErrExists) && attempt < 5 {
			continue
		}
		if err != nil {
			return Position{}, fmt.Errorf("assign position: %w", err)
		}
		break
	}
	for attempt := 0; ; attempt++ {
		p.RoleID, err = NewUID(s.rand())
		if err != nil {
			return Position{}, err
		}
		err = st.CreatePosition(ctx, p)
		if errors.Is(err, store.ErrExists) && attempt < 5 {
			continue
		}
		if err != nil {
			return Position{}, fmt.Errorf("assign position: %w", err)
		}
		return p, nil
	}
}

func (s *Service) managerRoles(idx *Index) []string {
	var out []string
	for code, r := range idx.Roles {
		if r.RALevel == RAManager {
			out = append(out, code)
		}
	}
	slices.Sort(out)
	return out
}

func (s *Service) rand() io.Reader {
	if s.Rand == nil {
		return rand.Reader
	}
	return s.Rand
}

func dedupe(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range in {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// ApprovePosition approves a pending RA Manager position. The approver is
// an RA Manager with scope over its organisation, or an operator, and not
// whoever requested it.
func (s *Service) ApprovePosition(ctx context.Context, actor Actor, roleID string) (Position, error) {
	st, err := s.rbac()
	if err != nil {
		return Position{}, err
	}
	p, err := st.GetPosition(ctx, roleID)
	if err != nil {
		return Position{}, fmt.Errorf("approve position: %w", err)
	}
	if !p.PendingApproval || !p.EndedAt.IsZero() {
		return Position{}, &InvalidError{Problems: []string{"person_roleid: this position is not waiting for approval"}}
	}
	if p.CreatedBy == actor.Name() {
		return Position{}, forbidden("A second RA Manager or an operator must approve this, not the person who requested it.")
	}
	auth, err := s.authorityFor(ctx, actor, p.OrgCode)
	if err != nil {
		return Position{}, err
	}
	if err := auth.Check(ActApprovePosition, p.OrgCode, p.RoleCode, p.PersonUID); err != nil {
		return Position{}, err
	}
	now := s.now().UTC()
	return st.UpdatePosition(ctx, roleID, func(x *Position) error {
		if !x.PendingApproval {
			return fmt.Errorf("approve position: %w", store.ErrConflict)
		}
		x.PendingApproval, x.ApprovedBy, x.ApprovedAt = false, actor.Name(), now
		return nil
	})
}

// EndPosition ends a position as actor, keeping its history. When it was
// the person's last active position, their sessions end and their tokens
// are revoked (EndAccess).
func (s *Service) EndPosition(ctx context.Context, actor Actor, roleID string) (Position, error) {
	st, err := s.rbac()
	if err != nil {
		return Position{}, err
	}
	p, err := st.GetPosition(ctx, roleID)
	if err != nil {
		return Position{}, fmt.Errorf("end position: %w", err)
	}
	auth, err := s.authorityFor(ctx, actor, p.OrgCode)
	if err != nil {
		return Position{}, err
	}
	if err := auth.Check(ActEndPosition, p.OrgCode, p.RoleCode, p.PersonUID); err != nil {
		return Position{}, err
	}
	now := s.now().UTC()
	p, err = st.UpdatePosition(ctx, roleID, func(x *Position) error {
		if !x.EndedAt.IsZero() {
			return &InvalidError{Problems: []string{"person_roleid: this position has already ended"}}
		}
		x.EndedAt, x.EndedBy = now, actor.Name()
		return nil
	})
	if err != nil {
		return Position{}, err
	}
	active, err := s.ActivePositions(ctx, p.PersonUID)
	if err != nil {
		return p, err
	}
	if len(active) == 0 {
		if err := s.endAccess(ctx, p.PersonUID, "leaver"); err != nil {
			return p, err
		}
	}
	return p, nil
}

func (s *Service) endAccess(ctx context.Context, uid, reason string) error {
	if s.EndAccess == nil {
		return nil
	}
	if err := s.EndAccess(ctx, uid, reason); err != nil {
		return fmt.Errorf("end access: %w", err)
	}
	return nil
}

// ListPositionsAs returns the person's positions, ended ones too, if actor
// may view them.
func (s *Service) ListPositionsAs(ctx context.Context, actor Actor, uid string) ([]Position, error) {
	if _, err := s.Store.GetPerson(ctx, uid); err != nil {
		return nil, fmt.Errorf("list positions: %w", err)
	}
	if err := s.CheckPerson(ctx, actor, ActViewPerson, uid); err != nil {
		return nil, err
	}
	st, _ := s.rbac()
	return st.ListPositions(ctx, uid)
}

// ActivePositions returns the person's positions active now, with their
// organisation names, in one store query.
func (s *Service) ActivePositions(ctx context.Context, uid string) ([]Position, error) {
	st, err := s.rbac()
	if err != nil {
		return nil, err
	}
	ps, err := st.ListPositions(ctx, uid)
	if err != nil {
		return nil, fmt.Errorf("active positions: %w", err)
	}
	now := s.now()
	out := ps[:0]
	for _, p := range ps {
		if p.ActiveAt(now) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Evidence types an RA may record.
var evidenceTypes = map[string]bool{
	"passport": true, "driving_licence": true, "national_id_card": true, "biometric_residence_permit": true,
	"birth_certificate": true, "utility_bill": true, "bank_statement": true, "council_tax_bill": true,
	"payslip": true, "p60": true, "marriage_certificate": true, "employer_id": true,
}

// RecordVerification records an identity check as actor and sets the
// person's id_assurance_level to its level (3 when not given).
func (s *Service) RecordVerification(ctx context.Context, actor Actor, uid string, v Verification) (Verification, Person, error) {
	st, err := s.rbac()
	if err != nil {
		return v, Person{}, err
	}
	if _, err := s.Store.GetPerson(ctx, uid); err != nil {
		return v, Person{}, fmt.Errorf("record verification: %w", err)
	}
	var probs []string
	if len(v.Evidence) == 0 || len(v.Evidence) > 10 {
		probs = append(probs, "evidence: 1 to 10 evidence types")
	}
	for _, e := range v.Evidence {
		if !evidenceTypes[e] {
			probs = append(probs, fmt.Sprintf("evidence: unknown type %q", clip(e)))
		}
	}
	if v.Level == 0 {
		v.Level = 3
	}
	if v.Level < 1 || v.Level > 3 {
		probs = append(probs, "level: must be 1 to 3")
	}
	now := s.now().UTC()
	if v.VerifiedOn.IsZero() {
		v.VerifiedOn = now.Truncate(24 * time.Hour)
	}
	if v.VerifiedOn.After(now) {
		probs = append(probs, "verified_on: cannot be in the future")
	}
	if len(probs) > 0 {
		return v, Person{}, &InvalidError{Problems: probs}
	}
	if err := s.CheckPerson(ctx, actor, ActVerifyIdentity, uid); err != nil {
		return v, Person{}, err
	}
	v.PersonUID, v.VerifiedBy, v.RecordedAt = uid, actor.Name(), now
	v.Evidence = dedupe(v.Evidence)
	if err := st.AddVerification(ctx, v); err != nil {
		return v, Person{}, fmt.Errorf("record verification: %w", err)
	}
	p, err := s.Store.UpdatePerson(ctx, uid, func(p *Person) error {
		p.IDAssuranceLevel = v.Level
		p.UpdatedAt = now
		return nil
	})
	if err != nil {
		return v, Person{}, fmt.Errorf("record verification: %w", err)
	}
	return v, p, nil
}

// ClosePerson closes the account as actor: every live position ends, the
// person's sessions end and their tokens are revoked.
func (s *Service) ClosePerson(ctx context.Context, actor Actor, uid string) (Person, error) {
	st, err := s.rbac()
	if err != nil {
		return Person{}, err
	}
	if _, err := s.Store.GetPerson(ctx, uid); err != nil {
		return Person{}, fmt.Errorf("close person: %w", err)
	}
	if err := s.CheckPerson(ctx, actor, ActCloseAccount, uid); err != nil {
		return Person{}, err
	}
	now := s.now().UTC()
	p, err := s.Store.UpdatePerson(ctx, uid, func(p *Person) error {
		p.Status, p.UpdatedAt = StatusClosed, now
		return nil
	})
	if err != nil {
		return Person{}, fmt.Errorf("close person: %w", err)
	}
	ps, err := st.ListPositions(ctx, uid)
	if err != nil {
		return p, fmt.Errorf("close person: %w", err)
	}
	for _, pos := range ps {
		if !pos.EndedAt.IsZero() {
			continue
		}
		if _, err := st.UpdatePosition(ctx, pos.RoleID, func(x *Position) error {
			if x.EndedAt.IsZero() {
				x.EndedAt, x.EndedBy = now, actor.Name()
			}
			return nil
		}); err != nil {
			return p, fmt.Errorf("close person: %w", err)
		}
	}
	return p, s.endAccess(ctx, uid, "account closed")
}

// ParseDate reads "2026-04-01" (midnight UTC; with endOfDay, the following
// midnight, so the day itself is included) or an RFC 3339 time.
func ParseDate(s string, endOfDay bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		if endOfDay {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, &InvalidError{Problems: []string{"dates: use YYYY-MM-DD or RFC 3339"}}
	}
	return t.UTC(), nil
}
