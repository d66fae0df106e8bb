package idp

import (
	"bytes"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
)

// Client is a registered relying party. Its JSON form uses RFC 7591 / OIDC
// Dynamic Client Registration / RFC 9126 names, plus nhsid's own nhsid_*
// fields, and is what the admin API accepts and returns (without secrets).
type Client struct {
	ID                               string              `json:"client_id"`
	Name                             string              `json:"client_name,omitempty"`
	RedirectURIs                     []string            `json:"redirect_uris,omitempty"`
	PostLogoutRedirectURIs           []string            `json:"post_logout_redirect_uris,omitempty"`
	GrantTypes                       []string            `json:"grant_types,omitempty"`
	ResponseTypes                    []string            `json:"response_types,omitempty"`
	Scope                            string              `json:"scope,omitempty"`
	Audience                         []string            `json:"audience,omitempty"`
	TokenEndpointAuthMethod          string              `json:"token_endpoint_auth_method"`
	TokenEndpointAuthSigningAlg      string              `json:"token_endpoint_auth_signing_alg,omitempty"`
	JWKS                             *jose.JSONWebKeySet `json:"jwks,omitempty"`
	JWKSURI                          string              `json:"jwks_uri,omitempty"`
	IDTokenSignedResponseAlg         string              `json:"id_token_signed_response_alg,omitempty"`
	RequirePAR                       bool                `json:"require_pushed_authorization_requests,omitempty"`
	BackchannelLogoutURI             string              `json:"backchannel_logout_uri,omitempty"`
	BackchannelLogoutSessionRequired bool                `json:"backchannel_logout_session_required,omitempty"`

	// AccessTokenFormat is "opaque" (default) or "jwt" (RFC 9068).
	AccessTokenFormat string `json:"nhsid_access_token_format,omitempty"`
	// RequiredAAL is the minimum authenticator assurance (2 or 3).
	RequiredAAL        int      `json:"nhsid_required_aal,omitempty"`
	AllowedRoles       []string `json:"nhsid_allowed_roles,omitempty"`
	RequiredActivities []string `json:"nhsid_required_activities,omitempty"`
	// IdleTimeout (seconds), when set, is a short idle timeout for this
	// client (shared ward tablets): a session idle longer than this is not
	// reused for it, and the next authorize re-authenticates.
	IdleTimeout int `json:"nhsid_idle_timeout,omitempty"`
	// Environment is "production" (default) or "sandbox".
	Environment string `json:"nhsid_environment,omitempty"`

	// SecretHash is the keyed hash of the current secret; RotatedSecretHashes
	// are older secrets still accepted during an overlap. Never serialised
	// to API clients.
	SecretHash          []byte    `json:"-"`
	RotatedSecretHashes [][]byte  `json:"-"`
	Disabled            bool      `json:"disabled,omitempty"`
	CreatedAt           time.Time `json:"created_at"`
	UpdatedAt           time.Time `json:"updated_at"`
}

var (
	_ fosite.Client                   = (*Client)(nil)
	_ fosite.OpenIDConnectClient      = (*Client)(nil)
	_ fosite.ClientWithSecretRotation = (*Client)(nil)
)

func (c *Client) GetID() string              { return c.ID }
func (c *Client) GetHashedSecret() []byte    { return c.SecretHash }
func (c *Client) GetRotatedHashes() [][]byte { return c.RotatedSecretHashes }
func (c *Client) GetRedirectURIs() []string  { return c.RedirectURIs }
func (c *Client) GetGrantTypes() fosite.Arguments {
	if len(c.GrantTypes) == 0 {
		return fosite.Arguments{"authorization_code"}
	}
	return c.GrantTypes
}
func (c *Client) GetResponseTypes() fosite.Arguments {
	if len(c.ResponseTypes) == 0 {
		return fosite.Arguments{"code"}
	}
	return c.ResponseTypes
}
func (c *Client) GetScopes() fosite.Arguments   { return fosite.RemoveEmpty(splitSpace(c.Scope)) }
func (c *Client) IsPublic() bool                { return c.TokenEndpointAuthMethod == "none" }
func (c *Client) GetAudience() fosite.Arguments { return c.Audience }

func (c *Client) GetRequestURIs() []string                 { return nil }
func (c *Client) GetJSONWebKeys() *jose.JSONWebKeySet      { return c.JWKS }
func (c *Client) GetJSONWebKeysURI() string                { return c.JWKSURI }
func (c *Client) GetRequestObjectSigningAlgorithm() string { return "RS256" }
func (c *Client) GetTokenEndpointAuthMethod() string       { return c.TokenEndpointAuthMethod }
func (c *Client) GetTokenEndpointAuthSigningAlgorithm() string {
	if c.TokenEndpointAuthSigningAlg == "" {
		return "RS256"
	}
	return c.TokenEndpointAuthSigningAlg
}

func splitSpace(s string) []string {
	var out []string
	start := -1
	for i, r := range s {
		if r == ' ' {
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

// Clone returns a copy of c that shares no slice, map or key set with it,
// so that a cached client can be handed out without callers seeing each
// other's changes. The parsed keys inside JWKS (public keys and
// certificates) are shared: nothing in nhsid modifies key material once
// parsed.
func (c *Client) Clone() *Client {
	if c == nil {
		return nil
	}
	out := *c
	out.RedirectURIs = slices.Clone(c.RedirectURIs)
	out.PostLogoutRedirectURIs = slices.Clone(c.PostLogoutRedirectURIs)
	out.GrantTypes = slices.Clone(c.GrantTypes)
	out.ResponseTypes = slices.Clone(c.ResponseTypes)
	out.Audience = slices.Clone(c.Audience)
	out.AllowedRoles = slices.Clone(c.AllowedRoles)
	out.RequiredActivities = slices.Clone(c.RequiredActivities)
	out.SecretHash = bytes.Clone(c.SecretHash)
	out.RotatedSecretHashes = nil
	for _, h := range c.RotatedSecretHashes {
		out.RotatedSecretHashes = append(out.RotatedSecretHashes, bytes.Clone(h))
	}
	if c.JWKS != nil {
		ks := &jose.JSONWebKeySet{Keys: slices.Clone(c.JWKS.Keys)}
		for i := range ks.Keys {
			k := &ks.Keys[i]
			k.Certificates = slices.Clone(k.Certificates)
			k.CertificateThumbprintSHA1 = bytes.Clone(k.CertificateThumbprintSHA1)
			k.CertificateThumbprintSHA256 = bytes.Clone(k.CertificateThumbprintSHA256)
		}
		out.JWKS = ks
	}
	return &out
}
