package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

func rbacTests() []suiteTest {
	return []suiteTest{
		{"RBAC/Catalogue", testCatalogue},
		{"RBAC/PersonOrgID", testPersonOrgID},
		{"RBAC/PositionRoundTrip", testPositionRoundTrip},
		{"RBAC/PositionUpdate", testPositionUpdate},
		{"RBAC/PositionConcurrentUpdate", testPositionConcurrentUpdate},
		{"RBAC/PositionListAndCount", testPositionList},
		{"RBAC/Verification", testVerification},
	}
}

func testCatalogue(t *testing.T, s Store) {
	ctx := context.Background()
	got, err := s.GetCatalogue(ctx)
	noErr(t, "get empty", err)
	equal(t, "empty catalogue", got, policy.Catalogue{})

	sample := policy.SampleCatalogue()
	noErr(t, "put sample", s.PutCatalogue(ctx, sample))
	got, err = s.GetCatalogue(ctx)
	noErr(t, "get", err)
	equal(t, "catalogue", got, sample)

	// Upsert: replace one role, add one activity, keep the rest.
	changed := sample.JobRoles[0]
	changed.Name = "Renamed Access Role"
	changed.DefaultActivities = nil
	extra := policy.Activity{Code: "B9999", Name: "Extra Activity", Includes: []string{"B0820"}}
	noErr(t, "put update", s.PutCatalogue(ctx, policy.Catalogue{JobRoles: []policy.JobRole{changed}, Activities: []policy.Activity{extra}}))
	want := sample.Merge(policy.Catalogue{JobRoles: []policy.JobRole{changed}, Activities: []policy.Activity{extra}})
	got, err = s.GetCatalogue(ctx)
	noErr(t, "get after update", err)
	equal(t, "catalogue after update", got, want)
}

func testPersonOrgID(t *testing.T, s Store) {
	ctx := context.Background()
	id, err := s.EnsurePersonOrgID(ctx, "555000000001", "RX1", "777000000001")
	noErr(t, "first", err)
	equal(t, "first id", id, "777000000001")
	id, err = s.EnsurePersonOrgID(ctx, "555000000001", "RX1", "777000000002")
	noErr(t, "again", err)
	equal(t, "reused id", id, "777000000001")
	id, err = s.EnsurePersonOrgID(ctx, "555000000001", "RY2", "777000000003")
	noErr(t, "other org", err)
	equal(t, "other org id", id, "777000000003")
	_, err = s.EnsurePersonOrgID(ctx, "555000000002", "RX1", "777000000001")
	isErr(t, "candidate taken", err, store.ErrExists)
}

func samplePosition(roleID, uid, org string) policy.Position {
	return policy.Position{
		RoleID: roleID, OrgID: "777" + roleID[3:], PersonUID: uid, OrgCode: org, RoleCode: policy.SampleClinicalRole,
		ActivityCodes: []string{"B0068", "B0825"}, WorkgroupCodes: []string{"W100001"}, AreaOfWorkCodes: []string{"P0010:Q0100:T1000"},
		StartsAt: t0, EndsAt: t0.Add(365 * 24 * time.Hour), CreatedBy: "operator:bootstrap", CreatedAt: t0,
	}
}

func testPositionRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	p := samplePosition("555000000101", "555000000001", "RX1")
	noErr(t, "create", s.CreatePosition(ctx, p))
	got, err := s.GetPosition(ctx, p.RoleID)
	noErr(t, "get", err)
	equal(t, "position", got, p)
	isErr(t, "duplicate", s.CreatePosition(ctx, p), store.ErrExists)
	_, err = s.GetPosition(ctx, "555000000999")
	isErr(t, "missing", err, store.ErrNotFound)

	// Zero times and empty lists come back as zero and nil.
	bare := policy.Position{RoleID: "555000000102", OrgID: "777000000102", PersonUID: "555000000001", OrgCode: "RX1",
		RoleCode: policy.SampleAdminRole, ActivityCodes: []string{}, StartsAt: t0}
	noErr(t, "create bare", s.CreatePosition(ctx, bare))
	got, err = s.GetPosition(ctx, bare.RoleID)
	noErr(t, "get bare", err)
	bare.ActivityCodes = nil
	equal(t, "bare position", got, bare)
}

func testPositionUpdate(t *testing.T, s Store) {
	ctx := context.Background()
	p := samplePosition("555000000201", "555000000001", "RX1")
	p.PendingApproval = true
	noErr(t, "create", s.CreatePosition(ctx, p))
	want := p
	want.PendingApproval, want.ApprovedBy, want.ApprovedAt = false, "555000000009", t0.Add(time.Minute)
	want.EndedAt, want.EndedBy = t0.Add(time.Hour), "555000000009"
	got, err := s.UpdatePosition(ctx, p.RoleID, func(x *policy.Position) error {
		x.PendingApproval, x.ApprovedBy, x.ApprovedAt = false, "555000000009", t0.Add(time.Minute)
		x.EndedAt, x.EndedBy = t0.Add(time.Hour), "555000000009"
		x.PersonUID, x.OrgCode, x.OrgID = "other", "OTHER", "other" // keys cannot change
		return nil
	})
	noErr(t, "update", err)
	equal(t, "updated", got, want)
	got, err = s.GetPosition(ctx, p.RoleID)
	noErr(t, "get", err)
	equal(t, "read back", got, want)

	_, err = s.UpdatePosition(ctx, p.RoleID, func(*policy.Position) error { return errAbort })
	isErr(t, "abort", err, errAbort)
	_, err = s.UpdatePosition(ctx, "555000000999", func(*policy.Position) error { return nil })
	isErr(t, "missing", err, store.ErrNotFound)
}

func testPositionConcurrentUpdate(t *testing.T, s Store) {
	ctx := context.Background()
	p := samplePosition("555000000301", "555000000001", "RX1")
	p.ActivityCodes = nil
	noErr(t, "create", s.CreatePosition(ctx, p))
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UpdatePosition(ctx, p.RoleID, func(x *policy.Position) error {
				x.ActivityCodes = append(x.ActivityCodes, "B0068")
				return nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		noErr(t, "concurrent update", err)
	}
	got, err := s.GetPosition(ctx, p.RoleID)
	noErr(t, "get", err)
	equal(t, "updates applied", len(got.ActivityCodes), n)
}

func testPositionList(t *testing.T, s Store) {
	ctx := context.Background()
	noErr(t, "org", s.CreateOrganisation(ctx, policy.Organisation{Code: "RX1", Name: "Example NHS Trust", CreatedAt: t0}))
	uid := "555000000001"
	a := samplePosition("555000000402", uid, "RX1")
	b := samplePosition("555000000401", uid, "RX1")
	b.CreatedAt = t0.Add(time.Minute)
	c := samplePosition("555000000403", uid, "NOORG")
	c.CreatedAt = t0.Add(2 * time.Minute)
	c.RoleCode = policy.SampleRAManager
	c.EndedAt = t0.Add(time.Hour)
	other := samplePosition("555000000404", "555000000002", "RX1")
	other.RoleCode = policy.SampleRAManager
	for _, p := range []policy.Position{c, b, a, other} {
		noErr(t, "create "+p.RoleID, s.CreatePosition(ctx, p))
	}
	got, err := s.ListPositions(ctx, uid)
	noErr(t, "list", err)
	a.OrgName, b.OrgName = "Example NHS Trust", "Example NHS Trust"
	equal(t, "positions", got, []policy.Position{a, b, c})
	got, err = s.ListPositions(ctx, "555000000099")
	noErr(t, "list none", err)
	equal(t, "no positions", len(got), 0)
	byPerson, err := s.ListPositionsOf(ctx, []string{"555000000099", uid, "555000000002"})
	noErr(t, "list of several", err)
	other.OrgName = "Example NHS Trust"
	equal(t, "positions of several", byPerson, map[string][]policy.Position{uid: {a, b, c}, "555000000002": {other}})
	byPerson, err = s.ListPositionsOf(ctx, nil)
	noErr(t, "list of none", err)
	equal(t, "positions of none", len(byPerson), 0)

	n, err := s.CountLivePositions(ctx, []string{policy.SampleRAManager})
	noErr(t, "count", err)
	equal(t, "live RA managers", n, 1)
	n, err = s.CountLivePositions(ctx, []string{policy.SampleRAManager, policy.SampleClinicalRole})
	noErr(t, "count two roles", err)
	equal(t, "live positions in two roles", n, 3)
	n, err = s.CountLivePositions(ctx, nil)
	noErr(t, "count none", err)
	equal(t, "no roles", n, 0)
}

func testVerification(t *testing.T, s Store) {
	ctx := context.Background()
	v1 := policy.Verification{PersonUID: "555000000001", Evidence: []string{"passport", "utility_bill"},
		VerifiedOn: t0.Truncate(24 * time.Hour), VerifiedBy: "555000000009", Level: 3, RecordedAt: t0}
	v2 := v1
	v2.Evidence = []string{"driving_licence"}
	v2.RecordedAt = t0.Add(time.Hour)
	noErr(t, "add 2", s.AddVerification(ctx, v2))
	noErr(t, "add 1", s.AddVerification(ctx, v1))
	noErr(t, "add other", s.AddVerification(ctx, policy.Verification{PersonUID: "555000000002", Evidence: []string{"passport"}, Level: 2, RecordedAt: t0}))
	got, err := s.ListVerifications(ctx, "555000000001")
	noErr(t, "list", err)
	equal(t, "verifications", got, []policy.Verification{v1, v2})
}
