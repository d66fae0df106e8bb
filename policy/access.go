package policy

import "slices"

// AccessRules are a client's role requirements: a user must hold an active
// position whose job role is allowed (full S…:G…:R… code or just the R…
// code) and whose activities, with inclusion, cover every required one.
// Empty rules let everyone in.
type AccessRules struct {
	AllowedRoles       []string
	RequiredActivities []string
}

// Empty reports whether the rules require nothing.
func (r AccessRules) Empty() bool { return len(r.AllowedRoles) == 0 && len(r.RequiredActivities) == 0 }

// Qualifies reports whether position p meets the rules.
func (r AccessRules) Qualifies(p Position, idx *Index) bool {
	if len(r.AllowedRoles) > 0 {
		ok := false
		for _, a := range r.AllowedRoles {
			if a == p.RoleCode || (!containsColon(a) && a == JobRoleCode(p.RoleCode)) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(r.RequiredActivities) > 0 {
		have := idx.Expand(p.ActivityCodes)
		for _, need := range r.RequiredActivities {
			if _, found := slices.BinarySearch(have, need); !found {
				return false
			}
		}
	}
	return true
}

// Qualifying returns the positions that meet the rules.
func (r AccessRules) Qualifying(ps []Position, idx *Index) []Position {
	if r.Empty() {
		return ps
	}
	var out []Position
	for _, p := range ps {
		if r.Qualifies(p, idx) {
			out = append(out, p)
		}
	}
	return out
}

func containsColon(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return true
		}
	}
	return false
}

// RoleChoice is what role selection and access rules decide for one
// sign-in.
type RoleChoice struct {
	// RoleID is the person_roleid for selected_roleid ("" for none).
	RoleID string
	// NeedChoice: the person must pick one of several qualifying roles.
	NeedChoice bool
	// Denied: the client's access rules are not met.
	Denied bool
}

// ChooseRole applies a client's access rules to the person's active
// positions and, when the client wants a selected role, picks it: chosen
// (from the selection page; it must qualify), else the session's earlier
// choice if it still qualifies, else the only qualifying position, else a
// choice is needed. With no position at all the sign-in continues without
// a role, unless the rules require one. It is shared by OIDC and SAML.
func ChooseRole(active []Position, idx *Index, rules AccessRules, wantsRole bool, chosen, sessionRole string) RoleChoice {
	cands := rules.Qualifying(active, idx)
	if !rules.Empty() && len(cands) == 0 {
		return RoleChoice{Denied: true}
	}
	if !wantsRole {
		return RoleChoice{}
	}
	has := func(id string) bool {
		return slices.ContainsFunc(cands, func(x Position) bool { return x.RoleID == id })
	}
	if chosen != "" {
		if has(chosen) {
			return RoleChoice{RoleID: chosen}
		}
		return RoleChoice{Denied: true}
	}
	if sessionRole != "" && has(sessionRole) {
		return RoleChoice{RoleID: sessionRole}
	}
	switch len(cands) {
	case 0:
		return RoleChoice{}
	case 1:
		return RoleChoice{RoleID: cands[0].RoleID}
	}
	return RoleChoice{NeedChoice: true}
}
