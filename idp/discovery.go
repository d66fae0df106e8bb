package idp

import (
	"net/http"
)

// acrValues are the authentication context classes nhsid understands, with
// the AAL each needs.
var acrValues = []struct {
	Name string
	AAL  int
}{
	{"AAL3_ANY", 3},
	{"AAL2_OR_AAL3_ANY", 2},
	{"AAL2_ANY", 2},
	{"AAL3_FIDO2", 3},
}

func acrAAL(name string) (int, bool) {
	for _, a := range acrValues {
		if a.Name == name {
			return a.AAL, true
		}
	}
	return 0, false
}

// discoveryDocument is the OpenID Provider Metadata.
func (p *Provider) discoveryDocument() map[string]any {
	acrs := make([]string, 0, len(acrValues))
	for _, a := range acrValues {
		acrs = append(acrs, a.Name)
	}
	return map[string]any{
		"issuer":                                           p.cfg.Issuer,
		"authorization_endpoint":                           p.url(PathAuthorize),
		"token_endpoint":                                   p.url(PathToken),
		"userinfo_endpoint":                                p.url(PathUserinfo),
		"jwks_uri":                                         p.url(PathJWKS),
		"introspection_endpoint":                           p.url(PathIntrospect),
		"revocation_endpoint":                              p.url(PathRevoke),
		"end_session_endpoint":                             p.url(PathLogout),
		"backchannel_logout_supported":                     true,
		"backchannel_logout_session_supported":             true,
		"pushed_authorization_request_endpoint":            p.url(PathPAR),
		"scopes_supported":                                 knownScopes,
		"response_types_supported":                         []string{"code"},
		"response_modes_supported":                         []string{"query", "form_post"},
		"grant_types_supported":                            []string{"authorization_code", "refresh_token", "client_credentials"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"token_endpoint_auth_methods_supported":            []string{AuthPrivateKeyJWT, AuthClientSecretBasic, AuthClientSecretPost, AuthNone},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS256", "PS256", "ES256"},
		"introspection_endpoint_auth_methods_supported":    []string{AuthClientSecretBasic},
		"revocation_endpoint_auth_methods_supported":       []string{AuthPrivateKeyJWT, AuthClientSecretBasic, AuthClientSecretPost, AuthNone},
		"id_token_signing_alg_values_supported":            p.cfg.SigningAlgs,
		"userinfo_signing_alg_values_supported":            []string{"none"},
		"acr_values_supported":                             acrs,
		"subject_types_supported":                          []string{"public"},
		"claims_parameter_supported":                       true,
		"request_parameter_supported":                      false,
		"request_uri_parameter_supported":                  false,
		"require_request_uri_registration":                 false,
		"authorization_response_iss_parameter_supported":   true,
		"require_pushed_authorization_requests":            false,
		"prompt_values_supported":                          []string{"none", "login"},
		"claims_supported": []string{
			"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid", "acr", "amr", "azp",
			"nhsid_useruid", "id_assurance_level", "authentication_assurance_level", "selected_roleid", "nhsid_environment",
			"name", "given_name", "family_name", "uid", "email",
			"title", "initials", "middle_names", "display_name", "idassurancelevel",
			"gmc_id", "nmc_id", "gphc_id", "gdc_id", "rcn_id", "gmp_id", "gdp_id", "consultant_id",
			"nhsid_nrbac_roles", "nhsid_user_orgs", "nhsid_org_memberships",
		},
	}
}

func (p *Provider) handleDiscovery(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_, _ = w.Write(p.discovery)
}
