package idp

import (
	"context"
	"sort"
	"strconv"
	"strings"

	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/policy"
)

// ClaimSource produces the userinfo claims for the granted scopes. Sources
// are merged in order; later ones may add scopes (roles, organisations).
type ClaimSource interface {
	Claims(ctx context.Context, person policy.Person, scopes fosite.Arguments, sess *authn.Session) (map[string]any, error)
}

// ClaimSourceFunc adapts a function to ClaimSource.
type ClaimSourceFunc func(ctx context.Context, person policy.Person, scopes fosite.Arguments, sess *authn.Session) (map[string]any, error)

// Claims calls f.
func (f ClaimSourceFunc) Claims(ctx context.Context, person policy.Person, scopes fosite.Arguments, sess *authn.Session) (map[string]any, error) {
	return f(ctx, person, scopes, sess)
}

// Scopes nhsid knows.
var knownScopes = []string{"openid", "profile", "email", "nhsperson", "professionalmemberships",
	"nationalrbacaccess", "associatedorgs", "organisationalmemberships", "selectedrole", "offline_access"}

// registrationClaims maps policy.Person.Registrations keys to claims.
var registrationClaims = map[string]string{
	"gmc": "gmc_id", "nmc": "nmc_id", "gphc": "gphc_id", "gdc": "gdc_id",
	"rcn": "rcn_id", "gmp": "gmp_id", "gdp": "gdp_id", "consultant": "consultant_id",
}

// DefaultClaims is the built-in source: profile, email, nhsperson and
// professionalmemberships.
type DefaultClaims struct{}

// Claims implements ClaimSource.
func (DefaultClaims) Claims(_ context.Context, p policy.Person, scopes fosite.Arguments, _ *authn.Session) (map[string]any, error) {
	out := map[string]any{}
	if scopes.Has("profile") {
		out["name"] = fullName(p)
		out["given_name"] = p.GivenName
		out["family_name"] = p.FamilyName
		out["uid"] = p.UID
	}
	if scopes.Has("email") && p.Email != "" {
		out["email"] = p.Email
	}
	if scopes.Has("nhsperson") {
		out["nhsid_useruid"] = p.UID
		out["title"] = p.Title
		out["initials"] = initials(p)
		out["middle_names"] = p.MiddleNames
		out["display_name"] = displayName(p)
		out["idassurancelevel"] = strconv.Itoa(p.IDAssuranceLevel)
	}
	if scopes.Has("professionalmemberships") {
		keys := make([]string, 0, len(p.Registrations))
		for k := range p.Registrations {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if c, ok := registrationClaims[strings.ToLower(k)]; ok && p.Registrations[k] != "" {
				out[c] = p.Registrations[k]
			}
		}
	}
	return out, nil
}

func fullName(p policy.Person) string {
	parts := []string{}
	for _, s := range []string{p.Title, p.GivenName, p.MiddleNames, p.FamilyName} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, " ")
}

func displayName(p policy.Person) string {
	if p.DisplayName != "" {
		return p.DisplayName
	}
	return strings.TrimSpace(p.GivenName + " " + p.FamilyName)
}

func initials(p policy.Person) string {
	var b strings.Builder
	for _, n := range append([]string{p.GivenName}, strings.Fields(p.MiddleNames)...) {
		if n != "" {
			b.WriteString(strings.ToUpper(n[:1]))
		}
	}
	return b.String()
}

// userClaims merges every source's claims for person.
func (p *Provider) userClaims(ctx context.Context, person policy.Person, scopes fosite.Arguments, sess *authn.Session) (map[string]any, error) {
	out := map[string]any{}
	for _, src := range p.claims {
		m, err := src.Claims(ctx, person, scopes, sess)
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			out[k] = v
		}
	}
	return out, nil
}
