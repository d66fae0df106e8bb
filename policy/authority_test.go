package policy_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nhsid/nhsid/policy"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// orgs: RX1 trust with child RX1AB (and grandchild RX1AB1); RY2 another trust.
var parents = map[string]string{"RX1": "", "RX1AB": "RX1", "RX1AB1": "RX1AB", "RY2": ""}

func pos(uid, org, role string, mod ...func(*policy.Position)) policy.Position {
	p := policy.Position{RoleID: "5550000" + org, PersonUID: uid, OrgCode: org, RoleCode: role, StartsAt: now.Add(-time.Hour)}
	for _, m := range mod {
		m(&p)
	}
	return p
}

func TestAuthorityCheck(t *testing.T) {
	idx := policy.NewIndex(policy.SampleCatalogue())
	const ra, target = "100000000001", "100000000002"
	ended := func(p *policy.Position) { p.EndedAt = now.Add(-time.Minute) }
	expired := func(p *policy.Position) { p.EndsAt = now.Add(-time.Minute) }
	future := func(p *policy.Position) { p.StartsAt = now.Add(time.Hour) }
	pending := func(p *policy.Position) { p.PendingApproval = true }

	tests := []struct {
		name      string
		actor     policy.Actor
		positions []policy.Position
		action    policy.Action
		org, role string
		target    string
		allow     bool
	}{
		{name: "operator may do anything", actor: policy.OperatorActor("operator:bootstrap"), action: policy.ActAssignPosition, org: "RX1", role: policy.SampleRAManager, target: target, allow: true},
		{name: "nobody without positions", actor: policy.PersonActor(ra), action: policy.ActCreatePerson, org: "RX1", allow: false},
		{name: "empty actor", actor: policy.Actor{}, action: policy.ActViewPerson, org: "RX1", allow: false},
		{name: "clinical role grants no RA authority", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleClinicalRole)}, action: policy.ActCreatePerson, org: "RX1", allow: false},

		{name: "manager assigns clinical role in own org", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager)}, action: policy.ActAssignPosition, org: "RX1", role: policy.SampleClinicalRole, target: target, allow: true},
		{name: "manager acts in child org", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager)}, action: policy.ActAssignPosition, org: "RX1AB", role: policy.SamplePharmacist, target: target, allow: true},
		{name: "manager acts in grandchild org", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager)}, action: policy.ActEndPosition, org: "RX1AB1", role: policy.SampleClinicalRole, target: target, allow: true},
		{name: "manager at child may not act in parent", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1AB", policy.SampleRAManager)}, action: policy.ActAssignPosition, org: "RX1", role: policy.SampleClinicalRole, target: target, allow: false},
		{name: "manager cross-org refused", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager)}, action: policy.ActAssignPosition, org: "RY2", role: policy.SampleClinicalRole, target: target, allow: false},
		{name: "manager appoints RA agent", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager)}, action: policy.ActAssignPosition, org: "RX1", role: policy.SampleRAAgent, target: target, allow: true},
		{name: "manager appoints sponsor", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager)}, action: policy.ActAssignPosition, org: "RX1", role: policy.SampleSponsor, target: target, allow: true},
		{name: "manager ends id checker", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager)}, action: policy.ActEndPosition, org: "RX1", role: policy.SampleIDChecker, target: target, allow: true},
		{name: "manager approves", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager)}, action: policy.ActApprovePosition, org: "RX1", role: policy.SampleRAManager, target: target, allow: true},
		{name: "manager assigns to self refused", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager)}, action: policy.ActAssignPosition, org: "RX1", role: policy.SampleClinicalRole, target: ra, allow: false},
		{name: "manager approves self refused", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager)}, action: policy.ActApprovePosition, org: "RX1", role: policy.SampleRAManager, target: ra, allow: false},
		{name: "manager views self", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager)}, action: policy.ActViewPerson, org: "RX1", target: ra, allow: true},
		{name: "ended manager position grants nothing", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager, ended)}, action: policy.ActAssignPosition, org: "RX1", role: policy.SampleClinicalRole, target: target, allow: false},
		{name: "expired manager position grants nothing", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager, expired)}, action: policy.ActCreatePerson, org: "RX1", allow: false},
		{name: "future manager position grants nothing", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager, future)}, action: policy.ActCreatePerson, org: "RX1", allow: false},
		{name: "pending manager position grants nothing", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager, pending)}, action: policy.ActCreatePerson, org: "RX1", allow: false},
		{name: "someone else's position grants nothing", actor: policy.PersonActor(ra), positions: []policy.Position{pos(target, "RX1", policy.SampleRAManager)}, action: policy.ActCreatePerson, org: "RX1", allow: false},

		{name: "agent assigns clinical role", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAAgent)}, action: policy.ActAssignPosition, org: "RX1AB", role: policy.SamplePharmacist, target: target, allow: true},
		{name: "agent may not appoint RA agent", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAAgent)}, action: policy.ActAssignPosition, org: "RX1", role: policy.SampleRAAgent, target: target, allow: false},
		{name: "agent may not end sponsor", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAAgent)}, action: policy.ActEndPosition, org: "RX1", role: policy.SampleSponsor, target: target, allow: false},
		{name: "agent may not appoint RA manager", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAAgent)}, action: policy.ActAssignPosition, org: "RX1", role: policy.SampleRAManager, target: target, allow: false},
		{name: "agent may not approve", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAAgent)}, action: policy.ActApprovePosition, org: "RX1", role: policy.SampleRAManager, target: target, allow: false},
		{name: "agent creates people", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAAgent)}, action: policy.ActCreatePerson, org: "", allow: true},
		{name: "agent verifies", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAAgent)}, action: policy.ActVerifyIdentity, org: "RX1", target: target, allow: true},
		{name: "agent issues invites", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAAgent)}, action: policy.ActIssueInvite, org: "RX1", target: target, allow: true},
		{name: "agent revokes credentials", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAAgent)}, action: policy.ActRevokeCredential, org: "RX1", target: target, allow: true},
		{name: "agent unlocks", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAAgent)}, action: policy.ActUnlock, org: "RX1", target: target, allow: true},
		{name: "agent ends sessions", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAAgent)}, action: policy.ActEndSessions, org: "RX1", target: target, allow: true},
		{name: "agent cross-org refused", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAAgent)}, action: policy.ActIssueInvite, org: "RY2", target: target, allow: false},
		{name: "agent unlocks self refused", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAAgent)}, action: policy.ActUnlock, org: "RX1", target: ra, allow: false},

		{name: "sponsor assigns assignable role", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleSponsor)}, action: policy.ActAssignPosition, org: "RX1", role: policy.SampleClinicalRole, target: target, allow: true},
		{name: "sponsor ends assignable role in child", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleSponsor)}, action: policy.ActEndPosition, org: "RX1AB", role: policy.SampleAdminRole, target: target, allow: true},
		{name: "sponsor on non-assignable role refused", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleSponsor)}, action: policy.ActAssignPosition, org: "RX1", role: policy.SamplePharmacist, target: target, allow: false},
		{name: "sponsor on unknown role refused", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleSponsor)}, action: policy.ActAssignPosition, org: "RX1", role: "S1:G1:R1", target: target, allow: false},
		{name: "sponsor on RA role refused", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleSponsor)}, action: policy.ActAssignPosition, org: "RX1", role: policy.SampleSponsor, target: target, allow: false},
		{name: "sponsor may not create people", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleSponsor)}, action: policy.ActCreatePerson, org: "RX1", allow: false},
		{name: "sponsor may not issue invites", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleSponsor)}, action: policy.ActIssueInvite, org: "RX1", target: target, allow: false},
		{name: "sponsor cross-org refused", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleSponsor)}, action: policy.ActAssignPosition, org: "RY2", role: policy.SampleClinicalRole, target: target, allow: false},
		{name: "sponsor assigns to self refused", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleSponsor)}, action: policy.ActAssignPosition, org: "RX1", role: policy.SampleClinicalRole, target: ra, allow: false},

		{name: "id checker creates people", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleIDChecker)}, action: policy.ActCreatePerson, org: "RX1", allow: true},
		{name: "id checker verifies identity", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleIDChecker)}, action: policy.ActVerifyIdentity, org: "RX1AB", target: target, allow: true},
		{name: "id checker may not assign", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleIDChecker)}, action: policy.ActAssignPosition, org: "RX1", role: policy.SampleClinicalRole, target: target, allow: false},
		{name: "id checker may not issue invites", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleIDChecker)}, action: policy.ActIssueInvite, org: "RX1", target: target, allow: false},
		{name: "id checker may not unlock", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleIDChecker)}, action: policy.ActUnlock, org: "RX1", target: target, allow: false},
		{name: "id checker verifies self refused", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleIDChecker)}, action: policy.ActVerifyIdentity, org: "RX1", target: ra, allow: false},
		{name: "id checker cross-org refused", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleIDChecker)}, action: policy.ActVerifyIdentity, org: "RY2", target: target, allow: false},

		{name: "unlocker unlocks", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleUnlocker)}, action: policy.ActUnlock, org: "RX1", target: target, allow: true},
		{name: "unlocker issues replacement invite", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleUnlocker)}, action: policy.ActIssueInvite, org: "RX1AB", target: target, allow: true},
		{name: "unlocker may not create people", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleUnlocker)}, action: policy.ActCreatePerson, org: "RX1", allow: false},
		{name: "unlocker may not revoke credentials", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleUnlocker)}, action: policy.ActRevokeCredential, org: "RX1", target: target, allow: false},
		{name: "unlocker may not assign", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleUnlocker)}, action: policy.ActAssignPosition, org: "RX1", role: policy.SampleClinicalRole, target: target, allow: false},
		{name: "unlocker cross-org refused", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleUnlocker)}, action: policy.ActUnlock, org: "RY2", target: target, allow: false},

		{name: "levels combine across orgs: sponsor at RY2 only assignable there", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleRAManager), pos(ra, "RY2", policy.SampleSponsor)}, action: policy.ActAssignPosition, org: "RY2", role: policy.SamplePharmacist, target: target, allow: false},
		{name: "levels combine within one org", actor: policy.PersonActor(ra), positions: []policy.Position{pos(ra, "RX1", policy.SampleSponsor), pos(ra, "RX1AB", policy.SampleRAAgent)}, action: policy.ActAssignPosition, org: "RX1AB", role: policy.SamplePharmacist, target: target, allow: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := policy.NewAuthority(tt.actor, tt.positions, idx, parents, now)
			err := a.Check(tt.action, tt.org, tt.role, tt.target)
			if tt.allow && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.allow {
				if err == nil {
					t.Fatal("allowed, want refused")
				}
				var fe *policy.ForbiddenError
				if !errors.Is(err, policy.ErrForbidden) || !errors.As(err, &fe) || fe.Reason == "" {
					t.Fatalf("error %v is not a ForbiddenError with a reason", err)
				}
			}
		})
	}
}

func TestAccessRules(t *testing.T) {
	idx := policy.NewIndex(policy.SampleCatalogue())
	clin := policy.Position{RoleCode: policy.SampleClinicalRole, ActivityCodes: []string{"B0825"}}
	tests := []struct {
		name  string
		rules policy.AccessRules
		p     policy.Position
		want  bool
	}{
		{name: "no rules", p: clin, want: true},
		{name: "full role code", rules: policy.AccessRules{AllowedRoles: []string{policy.SampleClinicalRole}}, p: clin, want: true},
		{name: "R code only", rules: policy.AccessRules{AllowedRoles: []string{"R8000"}}, p: clin, want: true},
		{name: "other role", rules: policy.AccessRules{AllowedRoles: []string{"R8008", "S8000:G8001:R8008"}}, p: clin, want: false},
		{name: "activity held", rules: policy.AccessRules{RequiredActivities: []string{"B0825"}}, p: clin, want: true},
		{name: "activity included", rules: policy.AccessRules{RequiredActivities: []string{"B0820"}}, p: clin, want: true},
		{name: "activity not held", rules: policy.AccessRules{RequiredActivities: []string{"B0570"}}, p: clin, want: false},
		{name: "inclusion does not go upwards", rules: policy.AccessRules{RequiredActivities: []string{"B0825"}}, p: policy.Position{RoleCode: policy.SampleAdminRole, ActivityCodes: []string{"B0820"}}, want: false},
		{name: "role and activity", rules: policy.AccessRules{AllowedRoles: []string{"R8000"}, RequiredActivities: []string{"B0820"}}, p: clin, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rules.Qualifies(tt.p, idx); got != tt.want {
				t.Fatalf("Qualifies = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPositionActiveAt(t *testing.T) {
	base := policy.Position{StartsAt: now.Add(-time.Hour)}
	tests := []struct {
		name string
		mod  func(*policy.Position)
		want bool
	}{
		{name: "open-ended", mod: func(*policy.Position) {}, want: true},
		{name: "before start", mod: func(p *policy.Position) { p.StartsAt = now.Add(time.Second) }, want: false},
		{name: "at start", mod: func(p *policy.Position) { p.StartsAt = now }, want: true},
		{name: "at end", mod: func(p *policy.Position) { p.EndsAt = now }, want: false},
		{name: "before end", mod: func(p *policy.Position) { p.EndsAt = now.Add(time.Second) }, want: true},
		{name: "ended", mod: func(p *policy.Position) { p.EndedAt = now.Add(-time.Second) }, want: false},
		{name: "pending approval", mod: func(p *policy.Position) { p.PendingApproval = true }, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base
			tt.mod(&p)
			if got := p.ActiveAt(now); got != tt.want {
				t.Fatalf("ActiveAt = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestChooseRole(t *testing.T) {
	idx := policy.NewIndex(policy.SampleCatalogue())
	clin := policy.Position{RoleID: "100000000001", RoleCode: policy.SampleClinicalRole, ActivityCodes: []string{"B0825"}}
	admin := policy.Position{RoleID: "100000000002", RoleCode: policy.SampleAdminRole, ActivityCodes: []string{"B0820"}}
	pharm := policy.Position{RoleID: "100000000003", RoleCode: policy.SamplePharmacist, ActivityCodes: []string{"B0570"}}
	onlyPharm := policy.AccessRules{AllowedRoles: []string{"R8006"}}
	needB0820 := policy.AccessRules{RequiredActivities: []string{"B0820"}}
	tests := []struct {
		name         string
		active       []policy.Position
		rules        policy.AccessRules
		wants        bool
		chosen, sess string
		want         policy.RoleChoice
	}{
		{name: "no scope, no rules", active: []policy.Position{clin, admin}, want: policy.RoleChoice{}},
		{name: "one role selected automatically", active: []policy.Position{clin}, wants: true, want: policy.RoleChoice{RoleID: clin.RoleID}},
		{name: "two roles need a choice", active: []policy.Position{clin, admin}, wants: true, want: policy.RoleChoice{NeedChoice: true}},
		{name: "no roles continue without", wants: true, want: policy.RoleChoice{}},
		{name: "no roles but rules deny", rules: onlyPharm, wants: true, want: policy.RoleChoice{Denied: true}},
		{name: "rules deny without scope", active: []policy.Position{clin}, rules: onlyPharm, want: policy.RoleChoice{Denied: true}},
		{name: "rules met without scope", active: []policy.Position{clin, pharm}, rules: onlyPharm, want: policy.RoleChoice{}},
		{name: "rules narrow to one", active: []policy.Position{clin, admin, pharm}, rules: onlyPharm, wants: true, want: policy.RoleChoice{RoleID: pharm.RoleID}},
		{name: "activity inclusion narrows to two", active: []policy.Position{clin, admin, pharm}, rules: needB0820, wants: true, want: policy.RoleChoice{NeedChoice: true}},
		{name: "chosen role", active: []policy.Position{clin, admin}, wants: true, chosen: admin.RoleID, want: policy.RoleChoice{RoleID: admin.RoleID}},
		{name: "chosen role not qualifying", active: []policy.Position{clin, pharm}, rules: onlyPharm, wants: true, chosen: clin.RoleID, want: policy.RoleChoice{Denied: true}},
		{name: "chosen role no longer active", active: []policy.Position{clin, admin}, wants: true, chosen: pharm.RoleID, want: policy.RoleChoice{Denied: true}},
		{name: "session role reused", active: []policy.Position{clin, admin}, wants: true, sess: clin.RoleID, want: policy.RoleChoice{RoleID: clin.RoleID}},
		{name: "session role ended asks again", active: []policy.Position{clin, admin}, wants: true, sess: pharm.RoleID, want: policy.RoleChoice{NeedChoice: true}},
		{name: "session role not qualifying for this client", active: []policy.Position{clin, admin, pharm}, rules: needB0820, wants: true, sess: pharm.RoleID, want: policy.RoleChoice{NeedChoice: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := policy.ChooseRole(tt.active, idx, tt.rules, tt.wants, tt.chosen, tt.sess)
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
