package idp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/store"
)

// SecretHasher is fosite's client-secret hasher: HMAC-SHA-256 keyed with
// the pepper. Client secrets are 256-bit random values, so a fast keyed
// hash is as strong as a slow one and costs microseconds per token request.
type SecretHasher struct {
	Pepper []byte
}

var _ fosite.Hasher = SecretHasher{}

// Hash returns HMAC-SHA-256(pepper, data).
func (h SecretHasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	m := hmac.New(sha256.New, h.Pepper)
	m.Write(data)
	return m.Sum(nil), nil
}

// Compare compares in constant time.
func (h SecretHasher) Compare(ctx context.Context, hash, data []byte) error {
	sum, _ := h.Hash(ctx, data)
	if !hmac.Equal(sum, hash) {
		return errors.New("client secret mismatch")
	}
	return nil
}

// Token endpoint authentication methods.
const (
	AuthPrivateKeyJWT     = "private_key_jwt"
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthNone              = "none"
)

// ValidateClient checks client metadata and returns every problem found.
func ValidateClient(c *Client) []string {
	var probs []string
	add := func(f string, a ...any) { probs = append(probs, fmt.Sprintf(f, a...)) }

	switch c.TokenEndpointAuthMethod {
	case AuthPrivateKeyJWT:
		if c.JWKS == nil && c.JWKSURI == "" {
			add("private_key_jwt needs jwks or jwks_uri")
		}
		if c.JWKS != nil && c.JWKSURI != "" {
			add("jwks and jwks_uri are mutually exclusive")
		}
	case AuthClientSecretBasic, AuthClientSecretPost, AuthNone:
	case "":
		add("token_endpoint_auth_method is required")
	default:
		add("token_endpoint_auth_method %q is not supported", c.TokenEndpointAuthMethod)
	}
	if c.JWKSURI != "" {
		if u, err := url.Parse(c.JWKSURI); err != nil || u.Scheme != "https" || u.Host == "" {
			add("jwks_uri must be an absolute https URL")
		}
	}
	if c.TokenEndpointAuthSigningAlg != "" && !contains([]string{"RS256", "PS256", "ES256", "RS384", "RS512", "PS384", "PS512", "ES384", "ES512"}, c.TokenEndpointAuthSigningAlg) {
		add("token_endpoint_auth_signing_alg %q is not supported", c.TokenEndpointAuthSigningAlg)
	}
	grants := c.GetGrantTypes()
	for _, g := range grants {
		if !contains([]string{"authorization_code", "refresh_token", "client_credentials"}, g) {
			add("grant type %q is not supported", g)
		}
	}
	for _, rt := range c.GetResponseTypes() {
		if rt != "code" {
			add("response type %q is not supported", rt)
		}
	}
	if c.TokenEndpointAuthMethod == AuthNone {
		if len(grants) != 1 || grants[0] != "authorization_code" {
			add("public clients (token_endpoint_auth_method none) may use only authorization_code (with PKCE)")
		}
	}
	if grants.Has("authorization_code") && len(c.RedirectURIs) == 0 {
		add("redirect_uris are required for authorization_code")
	}
	for _, u := range c.RedirectURIs {
		if p := checkRedirectURI(u); p != "" {
			add("redirect_uri %q %s", u, p)
		}
	}
	for _, u := range c.PostLogoutRedirectURIs {
		if p := checkRedirectURI(u); p != "" {
			add("post_logout_redirect_uri %q %s", u, p)
		}
	}
	if c.BackchannelLogoutURI != "" {
		if p := checkRedirectURI(c.BackchannelLogoutURI); p != "" {
			add("backchannel_logout_uri %s", p)
		}
	}
	if c.IDTokenSignedResponseAlg != "" && !validAlg(c.IDTokenSignedResponseAlg) {
		add("id_token_signed_response_alg must be RS256, PS256 or ES256")
	}
	if c.RequiredAAL != 0 && c.RequiredAAL != 2 && c.RequiredAAL != 3 {
		add("nhsid_required_aal must be 2 or 3")
	}
	if c.AccessTokenFormat != "" && c.AccessTokenFormat != "opaque" && c.AccessTokenFormat != "jwt" {
		add("nhsid_access_token_format must be opaque or jwt")
	}
	if c.IdleTimeout < 0 {
		add("nhsid_idle_timeout must be a number of seconds, 0 or more")
	}
	if c.Environment != "" && c.Environment != "sandbox" && c.Environment != "production" {
		add("nhsid_environment must be sandbox or production")
	}
	for _, s := range c.GetScopes() {
		if strings.ContainsAny(s, "\"\\") {
			add("scope %q is not valid", s)
		}
	}
	return probs
}

func checkRedirectURI(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		return "must be an absolute URL"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not contain a fragment"
	case u.Scheme == "https":
		return ""
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return ""
	case u.Scheme == "http":
		return "must use https (http only for localhost)"
	}
	return "must use https"
}

// RegisterClient validates c, fills in a client_id when empty and, for
// secret-based authentication, a 256-bit secret of which only the keyed hash
// is stored. The secret is returned once. Validation problems are an
// *apierror.Error (400 invalid_client_metadata).
func (p *Provider) RegisterClient(ctx context.Context, c *Client) (string, error) {
	return p.RegisterClientBy(ctx, "", c)
}

// RegisterClientBy is RegisterClient with the registering actor recorded
// in client.registered (the admin API passes the operator).
func (p *Provider) RegisterClientBy(ctx context.Context, actor string, c *Client) (string, error) {
	if probs := ValidateClient(c); len(probs) > 0 {
		return "", apierror.New(http.StatusBadRequest, "invalid_client_metadata", strings.Join(probs, "; "), nil)
	}
	if c.ID == "" {
		id, err := randomString(18)
		if err != nil {
			return "", err
		}
		c.ID = id
	}
	if c.AccessTokenFormat == "" {
		c.AccessTokenFormat = "opaque"
	}
	if c.Environment == "" {
		c.Environment = "production"
	}
	if len(c.GrantTypes) == 0 {
		c.GrantTypes = []string{"authorization_code"}
	}
	if len(c.ResponseTypes) == 0 && c.GetGrantTypes().Has("authorization_code") {
		c.ResponseTypes = []string{"code"}
	}
	var secret string
	if c.TokenEndpointAuthMethod == AuthClientSecretBasic || c.TokenEndpointAuthMethod == AuthClientSecretPost {
		s, err := randomString(32)
		if err != nil {
			return "", err
		}
		secret = s
		c.SecretHash, _ = p.hasher.Hash(ctx, []byte(secret))
	}
	now := p.now()
	c.CreatedAt, c.UpdatedAt = now, now
	if err := p.deps.Store.CreateClient(ctx, c); err != nil {
		if errors.Is(err, store.ErrExists) {
			return "", apierror.New(http.StatusConflict, "invalid_client_metadata", "A client with this client_id already exists.", err)
		}
		return "", fmt.Errorf("create client: %w", err)
	}
	if err := p.auditClientRegistered(ctx, actor, c); err != nil {
		return "", err
	}
	return secret, nil
}

// HashSecret returns the stored form of a client secret (for rotation by
// the admin API).
func (p *Provider) HashSecret(ctx context.Context, secret string) []byte {
	h, _ := p.hasher.Hash(ctx, []byte(secret))
	return h
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
