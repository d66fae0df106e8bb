package idp

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/web"
)

// PathSelectRole is authn's role selection page.
const PathSelectRole = "/select-role"

// RoleSource is what idp needs from policy for role claims, role selection
// and per-client access rules. *policy.Service implements it.
type RoleSource interface {
	// ActivePositions returns the person's positions active now, with
	// organisation names, in one store query.
	ActivePositions(ctx context.Context, uid string) ([]policy.Position, error)
	// Catalogue returns the role catalogue and its index.
	Catalogue(ctx context.Context) (policy.Catalogue, *policy.Index, error)
}

// RoleClaims is the claim source for the national RBAC scopes:
// nationalrbacaccess (nhsid_nrbac_roles), associatedorgs (nhsid_user_orgs)
// and organisationalmemberships (nhsid_org_memberships), in CIS2's shapes.
// Only active positions appear.
type RoleClaims struct {
	Roles RoleSource
}

// nrbacRole is one nhsid_nrbac_roles entry; field order follows CIS2.
type nrbacRole struct {
	PersonOrgID     string   `json:"person_orgid"`
	PersonRoleID    string   `json:"person_roleid"`
	OrgCode         string   `json:"org_code"`
	RoleCode        string   `json:"role_code"`
	RoleName        string   `json:"role_name"`
	Activities      []string `json:"activities,omitempty"`
	ActivityCodes   []string `json:"activity_codes,omitempty"`
	Workgroups      []string `json:"workgroups,omitempty"`
	WorkgroupsCodes []string `json:"workgroups_codes,omitempty"`
	AOW             []string `json:"aow,omitempty"`
	AOWCodes        []string `json:"aow_codes,omitempty"`
}

type userOrg struct {
	OrgCode string `json:"org_code"`
	OrgName string `json:"org_name"`
}

type orgMembership struct {
	PersonOrgID string `json:"person_orgid"`
	OrgCode     string `json:"org_code"`
	OrgName     string `json:"org_name"`
}

// Claims implements ClaimSource.
func (rc RoleClaims) Claims(ctx context.Context, p policy.Person, scopes fosite.Arguments, _ *authn.Session) (map[string]any, error) {
	out := map[string]any{}
	wantRoles, wantOrgs, wantMembers := scopes.Has("nationalrbacaccess"), scopes.Has("associatedorgs"), scopes.Has("organisationalmemberships")
	if rc.Roles == nil || !(wantRoles || wantOrgs || wantMembers) {
		return out, nil
	}
	positions, err := rc.Roles.ActivePositions(ctx, p.UID)
	if err != nil {
		return nil, fmt.Errorf("role claims: %w", err)
	}
	if wantRoles {
		_, idx, err := rc.Roles.Catalogue(ctx)
		if err != nil {
			return nil, fmt.Errorf("role claims: %w", err)
		}
		roles := make([]nrbacRole, 0, len(positions))
		for _, pos := range positions {
			e := nrbacRole{PersonOrgID: pos.OrgID, PersonRoleID: pos.RoleID, OrgCode: pos.OrgCode,
				RoleCode: pos.RoleCode, RoleName: idx.Roles[pos.RoleCode].RoleName()}
			for _, c := range pos.ActivityCodes {
				e.Activities = append(e.Activities, idx.Activities[c].Name)
				e.ActivityCodes = append(e.ActivityCodes, c)
			}
			for _, c := range pos.WorkgroupCodes {
				e.Workgroups = append(e.Workgroups, idx.Workgroups[c].Name)
				e.WorkgroupsCodes = append(e.WorkgroupsCodes, c)
			}
			for _, c := range pos.AreaOfWorkCodes {
				e.AOW = append(e.AOW, idx.AreasOfWork[c].Name)
				e.AOWCodes = append(e.AOWCodes, c)
			}
			roles = append(roles, e)
		}
		out["nhsid_nrbac_roles"] = roles
	}
	if wantOrgs || wantMembers {
		orgs := []userOrg{}
		members := []orgMembership{}
		seen := map[string]bool{}
		for _, pos := range positions {
			if seen[pos.OrgCode] {
				continue
			}
			seen[pos.OrgCode] = true
			orgs = append(orgs, userOrg{OrgCode: pos.OrgCode, OrgName: pos.OrgName})
			members = append(members, orgMembership{PersonOrgID: pos.OrgID, OrgCode: pos.OrgCode, OrgName: pos.OrgName})
		}
		if wantOrgs {
			out["nhsid_user_orgs"] = orgs
		}
		if wantMembers {
			out["nhsid_org_memberships"] = members
		}
	}
	return out, nil
}

// decideRole applies the client's access rules and role selection
// (policy.ChooseRole) for uid. Without a RoleSource the earlier choice
// (chosen, else the session's) passes through unchecked.
func (p *Provider) decideRole(ctx context.Context, client *Client, uid string, scopes fosite.Arguments, chosen, sessionRole string) (policy.RoleChoice, error) {
	wantsRole := scopes.Has("selectedrole")
	rules := policy.AccessRules{AllowedRoles: client.AllowedRoles, RequiredActivities: client.RequiredActivities}
	if p.deps.Roles == nil {
		if chosen == "" {
			chosen = sessionRole
		}
		return policy.RoleChoice{RoleID: chosen}, nil
	}
	if rules.Empty() && !wantsRole {
		return policy.RoleChoice{}, nil
	}
	active, err := p.deps.Roles.ActivePositions(ctx, uid)
	if err != nil {
		return policy.RoleChoice{}, err
	}
	var idx *policy.Index
	if !rules.Empty() {
		if _, idx, err = p.deps.Roles.Catalogue(ctx); err != nil {
			return policy.RoleChoice{}, err
		}
	}
	return policy.ChooseRole(active, idx, rules, wantsRole, chosen, sessionRole), nil
}

// captureWriter records a response instead of sending it.
type captureWriter struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (c *captureWriter) Header() http.Header         { return c.h }
func (c *captureWriter) WriteHeader(code int)        { c.code = code }
func (c *captureWriter) Write(b []byte) (int, error) { return c.body.Write(b) }

// accessDeniedPage is what the access denied template reads.
type accessDeniedPage struct {
	Title      string
	ClientName string
	ReturnURL  string
}

// denyAccess shows a page saying the person has no role that gives
// access to the client, linking back to the RP with error=access_denied
// (built by fosite). No token is issued.
func (p *Provider) denyAccess(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, client *Client) {
	ctx := r.Context()
	p.log.InfoContext(ctx, "authorize: access rules not met", "client", client.ID)
	cw := &captureWriter{h: http.Header{}}
	err := fosite.ErrAccessDenied.WithHint("The user does not hold a role that gives access to this application.")
	p.oauth.WriteAuthorizeError(ctx, &issWriter{ResponseWriter: cw, iss: p.cfg.Issuer}, ar, err)
	name := client.Name
	if name == "" {
		name = client.ID
	}
	data := accessDeniedPage{Title: "You do not have a role that gives access", ClientName: name}
	if loc := cw.h.Get("Location"); loc != "" {
		if u, perr := url.Parse(loc); perr == nil && (u.Scheme == "https" || u.Scheme == "http") {
			data.ReturnURL = u.String()
		}
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	if rerr := web.Render(w, http.StatusForbidden, "access_denied", data); rerr != nil {
		p.log.ErrorContext(ctx, "render access denied", "err", rerr)
	}
}

// selectRoleURL is the role selection page for flow id.
func selectRoleURL(flowID string) string {
	return PathSelectRole + "?flow=" + url.QueryEscape(flowID)
}

// serverErr keeps a store outage recognisable (503) and wraps anything
// else as server_error.
func serverErr(err error) error {
	if unavailable(err) {
		return err
	}
	return fosite.ErrServerError.WithWrap(err)
}
