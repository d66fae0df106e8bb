package policy_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store/memory"
)

type rbacEnv struct {
	svc   *policy.Service
	ended []string // "uid:reason" passed to EndAccess
	op    policy.Actor
}

func newRBACEnv(t *testing.T) *rbacEnv {
	t.Helper()
	ctx := context.Background()
	st := memory.New()
	e := &rbacEnv{op: policy.OperatorActor("operator:bootstrap")}
	e.svc = &policy.Service{Store: st, Now: func() time.Time { return now }}
	e.svc.EndAccess = func(_ context.Context, uid, reason string) error {
		e.ended = append(e.ended, uid+":"+reason)
		return nil
	}
	if _, err := e.svc.ImportCatalogue(ctx, e.op, mustSampleJSON(t), false); err != nil {
		t.Fatal(err)
	}
	for _, o := range []policy.Organisation{{Code: "RX1", Name: "Trust One"}, {Code: "RX1AB", Name: "Hospital", ParentCode: "RX1"}, {Code: "RY2", Name: "Trust Two"}} {
		if _, err := e.svc.CreateOrganisation(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func mustSampleJSON(t *testing.T) []byte {
	t.Helper()
	b, err := policy.SampleCatalogueJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *rbacEnv) person(t *testing.T, name string) string {
	t.Helper()
	p, err := e.svc.CreatePerson(context.Background(), policy.Person{GivenName: name, FamilyName: "Test"})
	if err != nil {
		t.Fatal(err)
	}
	return p.UID
}

func (e *rbacEnv) assign(t *testing.T, actor policy.Actor, uid, org, role string) policy.Position {
	t.Helper()
	p, err := e.svc.AssignPosition(context.Background(), actor, uid, policy.PositionInput{OrgCode: org, RoleCode: role})
	if err != nil {
		t.Fatalf("assign %s at %s: %v", role, org, err)
	}
	return p
}

func TestTwoPersonRule(t *testing.T) {
	ctx := context.Background()
	e := newRBACEnv(t)
	m1, m2, m3 := e.person(t, "First"), e.person(t, "Second"), e.person(t, "Third")

	first := e.assign(t, e.op, m1, "RX1", policy.SampleRAManager)
	if !first.Bootstrap || first.PendingApproval {
		t.Fatalf("first RA Manager by operator: %+v, want bootstrap and active", first)
	}
	second := e.assign(t, e.op, m2, "RX1", policy.SampleRAManager)
	if second.Bootstrap || !second.PendingApproval || second.ActiveAt(now) {
		t.Fatalf("second RA Manager: %+v, want pending", second)
	}
	if _, err := e.svc.ApprovePosition(ctx, e.op, second.RoleID); !errors.Is(err, policy.ErrForbidden) {
		t.Fatalf("requester approving: got %v, want forbidden", err)
	}
	if _, err := e.svc.ApprovePosition(ctx, policy.PersonActor(m2), second.RoleID); !errors.Is(err, policy.ErrForbidden) {
		t.Fatalf("the appointee approving: got %v, want forbidden", err)
	}
	got, err := e.svc.ApprovePosition(ctx, policy.PersonActor(m1), second.RoleID)
	if err != nil || !got.ActiveAt(now) || got.ApprovedBy != m1 {
		t.Fatalf("approval by another RA Manager: %+v %v", got, err)
	}
	if _, err := e.svc.ApprovePosition(ctx, policy.PersonActor(m1), second.RoleID); !errors.Is(err, policy.ErrInvalid) {
		t.Fatalf("approving twice: got %v, want invalid", err)
	}

	// An RA Manager requesting a third one cannot approve it; another
	// operator identity can.
	third := e.assign(t, policy.PersonActor(m1), m3, "RX1AB", policy.SampleRAManager)
	if !third.PendingApproval {
		t.Fatal("RA Manager-created RA Manager not pending")
	}
	if _, err := e.svc.ApprovePosition(ctx, policy.PersonActor(m1), third.RoleID); !errors.Is(err, policy.ErrForbidden) {
		t.Fatalf("requester approving own request: got %v, want forbidden", err)
	}
	if _, err := e.svc.ApprovePosition(ctx, policy.OperatorActor("operator:alice"), third.RoleID); err != nil {
		t.Fatalf("operator approval: %v", err)
	}
	// An RA Manager at another trust cannot approve.
	m4 := e.person(t, "Fourth")
	fourth := e.assign(t, policy.PersonActor(m1), m4, "RX1", policy.SampleRAManager)
	other := e.person(t, "Other")
	e.assign(t, e.op, other, "RY2", policy.SampleRAAgent)
	if _, err := e.svc.ApprovePosition(ctx, policy.PersonActor(other), fourth.RoleID); !errors.Is(err, policy.ErrForbidden) {
		t.Fatalf("cross-org approval: got %v, want forbidden", err)
	}
}

func TestAssignPosition(t *testing.T) {
	ctx := context.Background()
	e := newRBACEnv(t)
	mgr, sponsor, clin := e.person(t, "Manager"), e.person(t, "Sponsor"), e.person(t, "Clin")
	e.assign(t, e.op, mgr, "RX1", policy.SampleRAManager)
	e.assign(t, policy.PersonActor(mgr), sponsor, "RX1", policy.SampleSponsor)

	p1 := e.assign(t, policy.PersonActor(sponsor), clin, "RX1AB", policy.SampleClinicalRole)
	if !slices.Equal(p1.ActivityCodes, []string{"B0068", "B0825"}) {
		t.Fatalf("default activities: %v", p1.ActivityCodes)
	}
	p2 := e.assign(t, policy.PersonActor(mgr), clin, "RX1AB", policy.SampleAdminRole)
	if p1.OrgID != p2.OrgID || p1.RoleID == p2.RoleID || len(p2.RoleID) != 12 {
		t.Fatalf("person_orgid reused per org, person_roleid unique: %+v %+v", p1, p2)
	}
	p3 := e.assign(t, e.op, clin, "RY2", policy.SampleAdminRole)
	if p3.OrgID == p1.OrgID {
		t.Fatal("person_orgid shared across organisations")
	}

	tests := []struct {
		name   string
		actor  policy.Actor
		in     policy.PositionInput
		target string
		want   error
	}{
		{name: "sponsor non-assignable", actor: policy.PersonActor(sponsor), target: clin, in: policy.PositionInput{OrgCode: "RX1", RoleCode: policy.SamplePharmacist}, want: policy.ErrForbidden},
		{name: "sponsor cross-org", actor: policy.PersonActor(sponsor), target: clin, in: policy.PositionInput{OrgCode: "RY2", RoleCode: policy.SampleClinicalRole}, want: policy.ErrForbidden},
		{name: "self assignment", actor: policy.PersonActor(mgr), target: mgr, in: policy.PositionInput{OrgCode: "RX1", RoleCode: policy.SampleClinicalRole}, want: policy.ErrForbidden},
		{name: "unknown role", actor: e.op, target: clin, in: policy.PositionInput{OrgCode: "RX1", RoleCode: "S1:G1:R1"}, want: policy.ErrInvalid},
		{name: "unknown org", actor: e.op, target: clin, in: policy.PositionInput{OrgCode: "ZZZ", RoleCode: policy.SampleClinicalRole}, want: policy.ErrInvalid},
		{name: "unknown activity", actor: e.op, target: clin, in: policy.PositionInput{OrgCode: "RX1", RoleCode: policy.SampleClinicalRole, ActivityCodes: []string{"B7777"}}, want: policy.ErrInvalid},
		{name: "end before start", actor: e.op, target: clin, in: policy.PositionInput{OrgCode: "RX1", RoleCode: policy.SampleClinicalRole, StartsAt: now, EndsAt: now.Add(-time.Hour)}, want: policy.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.AssignPosition(ctx, tt.actor, tt.target, tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestLeavers(t *testing.T) {
	ctx := context.Background()
	e := newRBACEnv(t)
	mgr, clin := e.person(t, "Manager"), e.person(t, "Clin")
	e.assign(t, e.op, mgr, "RX1", policy.SampleRAManager)
	ra := policy.PersonActor(mgr)
	p1 := e.assign(t, ra, clin, "RX1", policy.SampleClinicalRole)
	p2 := e.assign(t, ra, clin, "RX1AB", policy.SampleAdminRole)

	if _, err := e.svc.EndPosition(ctx, ra, p1.RoleID); err != nil {
		t.Fatal(err)
	}
	if len(e.ended) != 0 {
		t.Fatalf("access ended with a position left: %v", e.ended)
	}
	if _, err := e.svc.EndPosition(ctx, ra, p1.RoleID); !errors.Is(err, policy.ErrInvalid) {
		t.Fatalf("ending twice: got %v", err)
	}
	ended, err := e.svc.EndPosition(ctx, ra, p2.RoleID)
	if err != nil || ended.EndedAt.IsZero() || ended.EndedBy != mgr {
		t.Fatalf("end: %+v %v", ended, err)
	}
	if !slices.Equal(e.ended, []string{clin + ":leaver"}) {
		t.Fatalf("EndAccess calls: %v", e.ended)
	}
	all, err := e.svc.ListPositionsAs(ctx, ra, clin)
	if err != nil || len(all) != 2 {
		t.Fatalf("history kept: %d %v", len(all), err)
	}

	// Closing an account ends its positions and access.
	other := e.person(t, "Other")
	e.assign(t, ra, other, "RX1", policy.SampleClinicalRole)
	e.ended = nil
	p, err := e.svc.ClosePerson(ctx, ra, other)
	if err != nil || p.Status != policy.StatusClosed {
		t.Fatalf("close: %+v %v", p, err)
	}
	if act, _ := e.svc.ActivePositions(ctx, other); len(act) != 0 {
		t.Fatalf("positions left after closure: %v", act)
	}
	if !slices.Equal(e.ended, []string{other + ":account closed"}) {
		t.Fatalf("EndAccess calls: %v", e.ended)
	}
	if _, err := e.svc.AssignPosition(ctx, ra, other, policy.PositionInput{OrgCode: "RX1", RoleCode: policy.SampleClinicalRole}); !errors.Is(err, policy.ErrInvalid) {
		t.Fatalf("assign to closed account: %v", err)
	}
}

func TestRecordVerification(t *testing.T) {
	ctx := context.Background()
	e := newRBACEnv(t)
	checker, clin := e.person(t, "Checker"), e.person(t, "Clin")
	e.assign(t, e.op, checker, "RX1", policy.SampleIDChecker)
	e.assign(t, e.op, clin, "RX1AB", policy.SampleClinicalRole)
	v, p, err := e.svc.RecordVerification(ctx, policy.PersonActor(checker), clin, policy.Verification{Evidence: []string{"passport", "utility_bill"}})
	if err != nil || p.IDAssuranceLevel != 3 || v.VerifiedBy != checker || v.VerifiedOn.IsZero() {
		t.Fatalf("verification: %+v %+v %v", v, p, err)
	}
	tests := []struct {
		name  string
		actor policy.Actor
		uid   string
		v     policy.Verification
		want  error
	}{
		{name: "no evidence", actor: e.op, uid: clin, v: policy.Verification{}, want: policy.ErrInvalid},
		{name: "unknown evidence", actor: e.op, uid: clin, v: policy.Verification{Evidence: []string{"library_card"}}, want: policy.ErrInvalid},
		{name: "future date", actor: e.op, uid: clin, v: policy.Verification{Evidence: []string{"passport"}, VerifiedOn: now.AddDate(0, 0, 2)}, want: policy.ErrInvalid},
		{name: "self", actor: policy.PersonActor(checker), uid: checker, v: policy.Verification{Evidence: []string{"passport"}}, want: policy.ErrForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := e.svc.RecordVerification(ctx, tt.actor, tt.uid, tt.v)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestImportCatalogue(t *testing.T) {
	ctx := context.Background()
	e := newRBACEnv(t)
	person := e.person(t, "Mgr")
	e.assign(t, e.op, person, "RX1", policy.SampleRAManager)
	if _, err := e.svc.ImportCatalogue(ctx, policy.PersonActor(person), mustSampleJSON(t), false); !errors.Is(err, policy.ErrForbidden) {
		t.Fatalf("RA importing: %v", err)
	}
	csv := "kind,code,name,includes\nactivity,B0900,Prescribe Medicines,B0370\n"
	if _, err := e.svc.ImportCatalogue(ctx, e.op, []byte(csv), true); err != nil {
		t.Fatal(err)
	}
	_, idx, err := e.svc.Catalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := idx.Expand([]string{"B0900"}); !slices.Equal(got, []string{"B0370", "B0900"}) {
		t.Fatalf("merged catalogue: %v", got)
	}
	if len(idx.Roles) != len(policy.SampleCatalogue().JobRoles) {
		t.Fatal("import replaced rather than merged")
	}
}

func TestParseCatalogue(t *testing.T) {
	base := policy.SampleCatalogue()
	tests := []struct {
		name    string
		csv     bool
		in      string
		wantErr string
	}{
		{name: "json ok", in: `{"job_roles":[{"code":"S1:G1:R1","staff_group_name":"A","staff_subgroup_name":"B","name":"C","default_activities":["B0068"]}],"activities":[]}`},
		{name: "json syntax error line", in: "{\n\"job_roles\": [\n,]}", wantErr: "line 3"},
		{name: "json wrong type line", in: "{\n\"activities\": [\n{\"code\": 5}]}", wantErr: "line 3"},
		{name: "json unknown field", in: `{"roles":[]}`, wantErr: "unknown field"},
		{name: "json bad code", in: `{"job_roles":[{"code":"R8000","staff_group_name":"A","staff_subgroup_name":"B","name":"C"}]}`, wantErr: "job_roles[0].code"},
		{name: "json bad ra level", in: `{"job_roles":[{"code":"S1:G1:R1","staff_group_name":"A","staff_subgroup_name":"B","name":"C","ra_level":"king"}]}`, wantErr: "ra_level"},
		{name: "json unknown include", in: `{"activities":[{"code":"B1","name":"X","includes":["B2"]}]}`, wantErr: "unknown activity"},
		{name: "json self include", in: `{"activities":[{"code":"B1","name":"X","includes":["B1"]}]}`, wantErr: "itself"},
		{name: "json duplicate", in: `{"activities":[{"code":"B1","name":"X"},{"code":"B1","name":"Y"}]}`, wantErr: "duplicate"},
		{name: "json trailing data", in: `{} {}`, wantErr: "single JSON object"},
		{name: "json quote in name", in: `{"activities":[{"code":"B1","name":"X\"Y"}]}`, wantErr: "activities[0].name"},
		{name: "csv ok", csv: true, in: "kind,code,name,staff_group_name,staff_subgroup_name,ra_level,assignable,default_activities\njob_role,S1:G1:R1,Role,Grp,Sub,sponsor,yes,B0068;B0825\nactivity,B1,Thing,\n"},
		{name: "csv line numbers", csv: true, in: "kind,code,name\nactivity,B1,Thing\nactivity,X2,Bad\n", wantErr: "line 3"},
		{name: "csv unknown kind", csv: true, in: "kind,code,name\nrole,B1,Thing\n", wantErr: "line 2: kind"},
		{name: "csv unknown column", csv: true, in: "kind,code,colour\n", wantErr: "unknown column"},
		{name: "csv no code column", csv: true, in: "kind,name\n", wantErr: "code column"},
		{name: "csv bad assignable", csv: true, in: "kind,code,name,staff_group_name,staff_subgroup_name,assignable\njob_role,S1:G1:R1,R,G,S,perhaps\n", wantErr: "line 2: assignable"},
		{name: "csv quote error", csv: true, in: "kind,code,name\nactivity,B1,\"unterminated\n", wantErr: "malformed CSV"},
		{name: "csv empty", csv: true, in: "", wantErr: "header"},
		{name: "too large", in: strings.Repeat(" ", policy.MaxCatalogueBytes+1), wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.csv {
				_, err = policy.ParseCatalogueCSV([]byte(tt.in), base)
			} else {
				_, err = policy.ParseCatalogueJSON([]byte(tt.in), base)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, policy.ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an invalid error mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzParseCatalogueJSON(f *testing.F) {
	sample, _ := policy.SampleCatalogueJSON()
	f.Add(sample)
	f.Add([]byte(`{"activities":[{"code":"B1","name":"X","includes":["B1"]}]}`))
	f.Add([]byte("{\n\"job_roles\": [\n,]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := policy.ParseCatalogueJSON(data, policy.Catalogue{})
		if err != nil {
			if !errors.Is(err, policy.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if err := c.Validate(policy.Catalogue{}, nil); err != nil {
			t.Fatalf("accepted catalogue fails validation: %v", err)
		}
		policy.NewIndex(c).Expand([]string{"B0825"})
	})
}

func FuzzParseCatalogueCSV(f *testing.F) {
	f.Add([]byte("kind,code,name,includes\nactivity,B1,Thing,\nactivity,B2,Other,B1\n"))
	f.Add([]byte("kind,code,name,staff_group_name,staff_subgroup_name,assignable\njob_role,S1:G1:R1,R,G,S,yes\n"))
	f.Add([]byte("kind,code\n\"x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := policy.ParseCatalogueCSV(data, policy.Catalogue{})
		if err != nil {
			if !errors.Is(err, policy.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if err := c.Validate(policy.Catalogue{}, nil); err != nil {
			t.Fatalf("accepted catalogue fails validation: %v", err)
		}
	})
}

// countingStore counts the reads of the whole organisation table and the
// look-ups of several people's positions.
type countingStore struct {
	*memory.Store
	orgReads      int
	positionLists int
}

func (c *countingStore) ListPositionsOf(ctx context.Context, uids []string) (map[string][]policy.Position, error) {
	c.positionLists++
	return c.Store.ListPositionsOf(ctx, uids)
}

func (c *countingStore) ListOrganisations(ctx context.Context, after string, limit int) ([]policy.Organisation, error) {
	c.orgReads++
	return c.Store.ListOrganisations(ctx, after, limit)
}

// TestCheckPeopleWith: checking a page of people at once decides for each
// exactly as checking them one by one, with one look-up of positions.
func TestCheckPeopleWith(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{Store: memory.New()}
	svc := &policy.Service{Store: st, Now: func() time.Time { return now }}
	op := policy.OperatorActor("operator:test")
	if _, err := svc.ImportCatalogue(ctx, op, mustSampleJSON(t), false); err != nil {
		t.Fatal(err)
	}
	for _, o := range []policy.Organisation{{Code: "RX1", Name: "Trust One"}, {Code: "RX2", Name: "Trust Two"}, {Code: "RX1AB", Name: "Hospital", ParentCode: "RX1"}} {
		if _, err := svc.CreateOrganisation(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	newPerson := func(name string, orgs ...string) string {
		p, err := svc.CreatePerson(ctx, policy.Person{GivenName: name, FamilyName: "Test"})
		if err != nil {
			t.Fatal(err)
		}
		for _, org := range orgs {
			if _, err := svc.AssignPosition(ctx, op, p.UID, policy.PositionInput{OrgCode: org, RoleCode: policy.SampleClinicalRole}); err != nil {
				t.Fatal(err)
			}
		}
		return p.UID
	}
	ra := policy.PersonActor(newPerson("Rita"))
	if _, err := svc.AssignPosition(ctx, op, ra.UID, policy.PositionInput{OrgCode: "RX1", RoleCode: policy.SampleRAManager}); err != nil {
		t.Fatal(err)
	}
	uids := []string{newPerson("Ann", "RX1"), newPerson("Bob", "RX2"), newPerson("Cat", "RX1AB"), newPerson("Dan", "RX2", "RX1AB"), newPerson("Eve"), "999999999999"}
	auth, err := svc.AuthorityOf(ctx, ra)
	if err != nil {
		t.Fatal(err)
	}
	st.positionLists = 0
	got, err := svc.CheckPeopleWith(ctx, auth, policy.ActViewPerson, uids)
	if err != nil {
		t.Fatal(err)
	}
	if st.positionLists != 1 {
		t.Fatalf("%d look-ups of positions for %d people, want 1", st.positionLists, len(uids))
	}
	allowed := 0
	for _, uid := range uids {
		want := svc.CheckPersonWith(ctx, auth, policy.ActViewPerson, uid)
		if (got[uid] == nil) != (want == nil) || !errors.Is(got[uid], policy.ErrForbidden) && got[uid] != nil {
			t.Errorf("person %s: together %v, alone %v", uid, got[uid], want)
		}
		if want == nil {
			allowed++
		}
	}
	// Ann, Cat and Dan work under RX1; Eve and the unknown UID have no
	// live position (any RA may act on them); Bob works only at RX2.
	if allowed != 5 || got[uids[1]] == nil {
		t.Errorf("%d people visible (Bob: %v), want 5, not Bob", allowed, got[uids[1]])
	}
}

// TestOrganisationTreeCached: RA checks read the organisation tree once,
// not once per check, and a replica whose cached tree lacks an
// organisation created elsewhere reads it again rather than refuse.
func TestOrganisationTreeCached(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{Store: memory.New()}
	clock := now
	op := policy.OperatorActor("operator:test")
	// Two replicas: one the RA uses, one where organisations are made.
	here := &policy.Service{Store: st, Now: func() time.Time { return clock }}
	there := &policy.Service{Store: st, Now: func() time.Time { return clock }}
	if _, err := there.ImportCatalogue(ctx, op, mustSampleJSON(t), false); err != nil {
		t.Fatal(err)
	}
	if _, err := there.CreateOrganisation(ctx, policy.Organisation{Code: "RX1", Name: "Trust One"}); err != nil {
		t.Fatal(err)
	}
	newPerson := func(name, org, role string) string {
		p, err := there.CreatePerson(ctx, policy.Person{GivenName: name, FamilyName: "Test"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := there.AssignPosition(ctx, op, p.UID, policy.PositionInput{OrgCode: org, RoleCode: role}); err != nil {
			t.Fatal(err)
		}
		return p.UID
	}
	ra := policy.PersonActor(newPerson("Rita", "RX1", policy.SampleRAManager))
	var staff []string
	for i := range 20 {
		staff = append(staff, newPerson("Staff"+string(rune('A'+i)), "RX1", policy.SampleClinicalRole))
	}

	st.orgReads = 0
	auth, err := here.AuthorityOf(ctx, ra)
	if err != nil {
		t.Fatal(err)
	}
	for _, uid := range staff {
		if err := here.CheckPerson(ctx, ra, policy.ActViewPerson, uid); err != nil {
			t.Fatalf("check %s: %v", uid, err)
		}
		if err := here.CheckPersonWith(ctx, auth, policy.ActViewPerson, uid); err != nil {
			t.Fatalf("check with authority %s: %v", uid, err)
		}
	}
	if st.orgReads != 1 {
		t.Fatalf("the organisation tree was read %d times for 40 checks, want once", st.orgReads)
	}

	// Hospitals under RX1, each made on the other replica after this one
	// read the tree: an RA assigns a position at one, and views a nurse
	// at the next.
	hospital := func(code string) {
		if _, err := there.CreateOrganisation(ctx, policy.Organisation{Code: code, Name: "Hospital " + code, ParentCode: "RX1"}); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(2 * time.Second) // past the pause between readings
	}
	hospital("RX1AB")
	other := newPerson("Otto", "RX1", policy.SampleClinicalRole)
	if _, err := here.AssignPosition(ctx, ra, other, policy.PositionInput{OrgCode: "RX1AB", RoleCode: policy.SampleClinicalRole}); err != nil {
		t.Fatalf("assign at an organisation newer than the cached tree: %v", err)
	}
	hospital("RX1CD")
	nurse := newPerson("Nina", "RX1CD", policy.SampleClinicalRole)
	if err := here.CheckPersonWith(ctx, auth, policy.ActViewPerson, nurse); err != nil {
		t.Fatalf("view a person at an organisation newer than the cached tree: %v", err)
	}
	if st.orgReads != 3 {
		t.Fatalf("the organisation tree was read %d times, want 3", st.orgReads)
	}
}
