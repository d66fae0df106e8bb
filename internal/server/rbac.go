package server

import (
	"context"
	"fmt"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/policy"
)

// roleClaimSources is the userinfo claim sources: the built-in profile
// claims and the national RBAC claims from policy.
func roleClaimSources(roles idp.RoleSource) []idp.ClaimSource {
	return []idp.ClaimSource{idp.DefaultClaims{}, idp.RoleClaims{Roles: roles}}
}

// endAccess ends every live SSO session of a person through
// authn.EndSession, whose listeners revoke the tokens issued in them and
// tell their relying parties (back-channel logout, SAML SLO). policy calls
// it for leavers (last position ended) and closed accounts.
func (s *Server) endAccess(ctx context.Context, uid, reason string) error {
	n, err := s.Authn.EndPersonSessions(ctx, uid, authn.EndAccountClosed)
	if err != nil {
		return fmt.Errorf("end sessions: %w", err)
	}
	s.log.InfoContext(ctx, "access ended", "person", uid, "reason", reason, "sessions", n)
	return nil
}

// seedDemoRoles loads the sample role catalogue and, when the demo
// clinician exists, gives them a clinical position at the demo
// organisation (one role: selected automatically, and in the role claims).
func (s *Server) seedDemoRoles(ctx context.Context) error {
	if err := s.Store.PutCatalogue(ctx, policy.SampleCatalogue()); err != nil {
		return err
	}
	if s.Demo == nil || s.Demo.PersonUID == "" {
		return nil
	}
	op := policy.OperatorActor("dev-seed")
	for _, role := range []string{policy.SampleClinicalRole} {
		if _, err := s.Policy.AssignPosition(ctx, op, s.Demo.PersonUID, policy.PositionInput{OrgCode: s.Demo.OrgCode, RoleCode: role}); err != nil {
			return err
		}
	}
	return nil
}
