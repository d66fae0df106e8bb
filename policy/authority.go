package policy

import (
	"errors"
	"time"
)

// ErrForbidden marks an action the actor's authority does not allow.
var ErrForbidden = errors.New("forbidden")

// ForbiddenError says why an action was refused; Reason is safe to show.
type ForbiddenError struct{ Reason string }

func (e *ForbiddenError) Error() string { return e.Reason }

// Is makes errors.Is(err, ErrForbidden) hold.
func (e *ForbiddenError) Is(target error) bool { return target == ErrForbidden }

func forbidden(reason string) error { return &ForbiddenError{Reason: reason} }

// Actor is who performs an RA or admin action: an operator (the bootstrap
// token or an admin client), with operator rights and no RA scope, or a
// person, whose authority comes from their own active positions.
type Actor struct {
	// UID is the acting person; empty for an operator.
	UID string
	// Operator is set for operator credentials.
	Operator bool
	// ID names an operator in records ("operator:bootstrap").
	ID string
}

// OperatorActor returns an operator actor named id.
func OperatorActor(id string) Actor { return Actor{Operator: true, ID: id} }

// PersonActor returns the actor for the person uid.
func PersonActor(uid string) Actor { return Actor{UID: uid, ID: uid} }

// Name is how records name the actor.
func (a Actor) Name() string {
	if a.ID != "" {
		return a.ID
	}
	return a.UID
}

// Action is something an RA does.
type Action string

// RA actions (DESIGN.md, RA permissions).
const (
	ActCreatePerson     Action = "create_person"
	ActVerifyIdentity   Action = "verify_identity"
	ActIssueInvite      Action = "issue_invite"
	ActAssignPosition   Action = "assign_position"
	ActEndPosition      Action = "end_position"
	ActApprovePosition  Action = "approve_position"
	ActRevokeCredential Action = "revoke_credential"
	ActUnlock           Action = "unlock_account"
	ActEndSessions      Action = "end_sessions"
	ActCloseAccount     Action = "close_account"
	ActViewPerson       Action = "view_person"
)

// levelActions is the permissions table. Position actions are further
// limited in Check: RA roles need an RA Manager, sponsors only assignable
// roles, approvals an RA Manager.
var levelActions = map[string]map[Action]bool{
	RAManager: {ActCreatePerson: true, ActVerifyIdentity: true, ActIssueInvite: true, ActAssignPosition: true,
		ActEndPosition: true, ActApprovePosition: true, ActRevokeCredential: true, ActUnlock: true,
		ActEndSessions: true, ActCloseAccount: true, ActViewPerson: true},
	RAAgent: {ActCreatePerson: true, ActVerifyIdentity: true, ActIssueInvite: true, ActAssignPosition: true,
		ActEndPosition: true, ActRevokeCredential: true, ActUnlock: true, ActEndSessions: true,
		ActCloseAccount: true, ActViewPerson: true},
	RASponsor:   {ActAssignPosition: true, ActEndPosition: true, ActViewPerson: true},
	RAIDChecker: {ActCreatePerson: true, ActVerifyIdentity: true, ActViewPerson: true},
	RAUnlocker:  {ActUnlock: true, ActIssueInvite: true, ActViewPerson: true},
}

// Authority is what an actor may do, computed from their active positions
// at one instant. It is a pure value: Check does no I/O.
type Authority struct {
	Actor Actor
	// grants maps an organisation code to the RA levels held there.
	grants  map[string]map[string]bool
	parents map[string]string
	roles   map[string]JobRole
}

// NewAuthority computes actor's authority from positions (the actor's
// own; others are ignored), the catalogue, the organisation tree (code to
// parent code) and now. Ended, pending or out-of-date positions grant
// nothing.
func NewAuthority(actor Actor, positions []Position, idx *Index, parents map[string]string, now time.Time) *Authority {
	a := &Authority{Actor: actor, grants: map[string]map[string]bool{}, parents: parents, roles: idx.Roles}
	if actor.Operator || actor.UID == "" {
		return a
	}
	for _, p := range positions {
		if p.PersonUID != actor.UID || !p.ActiveAt(now) {
			continue
		}
		lvl := idx.Roles[p.RoleCode].RALevel
		if lvl == "" {
			continue
		}
		if a.grants[p.OrgCode] == nil {
			a.grants[p.OrgCode] = map[string]bool{}
		}
		a.grants[p.OrgCode][lvl] = true
	}
	return a
}

// IsRA reports whether the actor holds any RA level (or is an operator).
func (a *Authority) IsRA() bool { return a.Actor.Operator || len(a.grants) > 0 }

// Levels returns the RA levels the actor holds at orgCode, directly or
// through a parent organisation.
func (a *Authority) Levels(orgCode string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]bool{}
	for c := orgCode; c != "" && !seen[c]; c = a.parents[c] {
		seen[c] = true
		for l := range a.grants[c] {
			out[l] = true
		}
	}
	return out
}

// Orgs returns the organisations where the actor holds an RA level
// directly (children are in scope too).
func (a *Authority) Orgs() []string {
	out := make([]string, 0, len(a.grants))
	for c := range a.grants {
		out = append(out, c)
	}
	return out
}

// Check decides whether the actor may perform action at orgCode (empty:
// anywhere the actor has authority, as for creating a person), on a
// position in roleCode (for position actions), affecting targetUID.
func (a *Authority) Check(action Action, orgCode, roleCode, targetUID string) error {
	if a.Actor.Operator {
		return nil
	}
	if a.Actor.UID == "" {
		return forbidden("You are not signed in as a Registration Authority.")
	}
	if targetUID != "" && targetUID == a.Actor.UID && action != ActViewPerson {
		if action == ActAssignPosition || action == ActApprovePosition {
			return forbidden("You cannot assign roles to yourself.")
		}
		return forbidden("You cannot do this to your own account.")
	}
	var levels map[string]bool
	if orgCode == "" {
		levels = map[string]bool{}
		for _, ls := range a.grants {
			for l := range ls {
				levels[l] = true
			}
		}
	} else {
		levels = a.Levels(orgCode)
	}
	if len(levels) == 0 {
		return forbidden("You do not have a Registration Authority role in this organisation.")
	}
	allowed := func(act Action) bool {
		for l := range levels {
			if levelActions[l][act] {
				return true
			}
		}
		return false
	}
	if !allowed(action) {
		return forbidden("Your Registration Authority role does not allow this.")
	}
	switch action {
	case ActApprovePosition:
		if !levels[RAManager] {
			return forbidden("Only an RA Manager can approve this.")
		}
	case ActAssignPosition, ActEndPosition:
		role := a.roles[roleCode]
		if role.RALevel != "" {
			if !levels[RAManager] {
				return forbidden("Only an RA Manager can appoint or end Registration Authority roles.")
			}
			return nil
		}
		if levels[RAManager] || levels[RAAgent] {
			return nil
		}
		if levels[RASponsor] && role.Assignable {
			return nil
		}
		return forbidden("Sponsors may only assign and end roles marked assignable.")
	}
	return nil
}
