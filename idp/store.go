package idp

import (
	"context"
	"encoding/json"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"
)

// SigningKey is one token-signing key. The private key is stored encrypted
// under the key-encryption key; idp decrypts it once and keeps it in memory.
type SigningKey struct {
	KID string
	// Alg is RS256, PS256 or ES256.
	Alg string
	// PrivateEncrypted is the sealed private key (idp's format).
	PrivateEncrypted []byte
	// PublicJWK is the public key as a JWK (JSON).
	PublicJWK []byte
	CreatedAt time.Time
	// ActiveAt: published in JWKS from CreatedAt, signs from ActiveAt.
	ActiveAt time.Time
	// RetiredAt: zero while it may sign; set when a newer key takes over.
	RetiredAt time.Time
	// ExpiresAt: zero while needed; after it the key leaves JWKS.
	ExpiresAt time.Time
	// RevokedAt: zero unless revoked in an emergency (removed from JWKS at once).
	RevokedAt time.Time
}

// ClientStore persists relying parties.
type ClientStore interface {
	// CreateClient fails with store.ErrExists.
	CreateClient(ctx context.Context, c *Client) error
	// GetClient returns a *Client, or fosite.ErrNotFound. It is also
	// fosite's ClientManager.GetClient.
	GetClient(ctx context.Context, id string) (fosite.Client, error)
	UpdateClient(ctx context.Context, id string, fn func(*Client) error) (*Client, error)
	ListClients(ctx context.Context, after string, limit int) ([]*Client, error)
}

// KeyStore persists signing keys.
type KeyStore interface {
	CreateKey(ctx context.Context, k SigningKey) error
	// ListKeys returns every key, oldest first.
	ListKeys(ctx context.Context) ([]SigningKey, error)
	UpdateKey(ctx context.Context, kid string, fn func(*SigningKey) error) (SigningKey, error)
}

// RefreshGrace lets a store honour the refresh grace period: within Grace
// after first use, the same client may use a rotated refresh token once more.
// Stores read it from the context key set by idp (see WithRefreshGrace).

// OAuthStore is fosite's storage, implemented by store/memory and
// store/postgres. Token rows are keyed by a hash of the token signature.
//
// Refresh reuse: GetRefreshTokenSession for a rotated or revoked token must
// return the stored requester together with fosite.ErrInactiveToken (never a
// nil requester), so fosite revokes the whole grant. Within the grace period
// (RefreshGraceFromContext) the first re-use of a rotated token by the same
// client is returned as active, once.
type OAuthStore interface {
	fosite.ClientManager
	oauth2.AuthorizeCodeStorage
	oauth2.AccessTokenStorage
	oauth2.RefreshTokenStorage
	oauth2.TokenRevocationStorage
	pkce.PKCERequestStorage
	openid.OpenIDConnectRequestStorage
	fosite.PARStorage

	// RevokeBySession revokes every access and refresh token whose session
	// carries this sid (for logout); it returns how many were revoked.
	RevokeBySession(ctx context.Context, sid string) (int, error)
}

// Store is everything idp persists.
type Store interface {
	ClientStore
	KeyStore
	OAuthStore
}

type graceKey struct{}

type codeReuseKey struct{}

// codeReuse notes, for one token request, that its code was found spent.
type codeReuse struct{ seen atomic.Bool }

// withCodeReuseNote returns ctx in which NoteCodeReused is remembered.
func withCodeReuseNote(ctx context.Context) (context.Context, *codeReuse) {
	n := &codeReuse{}
	return context.WithValue(ctx, codeReuseKey{}, n), n
}

// NoteCodeReused tells the token request in ctx that its authorization
// code was already spent: stores call it where GetAuthorizeCodeSession
// answers fosite.ErrInvalidatedAuthorizeCode, so that the reuse, which
// fosite answers with invalid_grant after revoking the grant, is audited.
func NoteCodeReused(ctx context.Context) {
	if n, ok := ctx.Value(codeReuseKey{}).(*codeReuse); ok {
		n.seen.Store(true)
	}
}

// WithRefreshGrace tells the store the refresh grace period for this request.
func WithRefreshGrace(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, graceKey{}, d)
}

// RefreshGraceFromContext returns the grace period set by WithRefreshGrace, or 0.
func RefreshGraceFromContext(ctx context.Context) time.Duration {
	d, _ := ctx.Value(graceKey{}).(time.Duration)
	return d
}

// What a store keeps of a request: both adapters apply the same rules, so
// they live with the contract.

// TokenFormAllowList is the part of a request form a store keeps with a
// token. Secrets (client_secret, client_assertion, code_verifier, code,
// refresh_token) are never on it; fosite adds grant_type, response_type,
// scope and client_id itself.
var TokenFormAllowList = []string{
	"redirect_uri", "code_challenge", "code_challenge_method",
	"nonce", "max_age", "prompt", "acr_values", "id_token_hint",
	"audience", "claims", "login_hint", "ui_locales",
}

// tokenFormKept is TokenFormAllowList and the parameters fosite's
// Request.Sanitize keeps whatever it is given.
var tokenFormKept = func() map[string]bool {
	m := map[string]bool{"grant_type": true, "response_type": true, "scope": true, "client_id": true}
	for _, k := range TokenFormAllowList {
		m[k] = true
	}
	return m
}()

// StoredTokenForm is the encoded part of form a store keeps with a token:
// what req.Sanitize(TokenFormAllowList).GetRequestForm().Encode() gives,
// without Sanitize's copy of the whole request (a tenth of the memory
// allocated per client_credentials token).
func StoredTokenForm(form url.Values) string {
	kept := make(url.Values, 4)
	for k, v := range form {
		if tokenFormKept[k] {
			kept[k] = v
		}
	}
	return kept.Encode()
}

// PARSecretParams are dropped from a pushed authorization request's form
// before it is stored.
var PARSecretParams = []string{"client_secret", "client_assertion", "client_assertion_type", "code_verifier"}

// Token row kinds. A signature is unique only within its kind: the PKCE
// and OIDC rows share the authorize code's signature.
const (
	TokenKindCode    = "authorize_code"
	TokenKindAccess  = "access"
	TokenKindRefresh = "refresh"
	TokenKindPKCE    = "pkce"
	TokenKindOIDC    = "oidc"
)

// TokenKindType is the fosite token type whose expiry a row of kind keeps:
// access and refresh rows their own, code, PKCE and OIDC rows the code's.
func TokenKindType(kind string) fosite.TokenType {
	switch kind {
	case TokenKindAccess:
		return fosite.AccessToken
	case TokenKindRefresh:
		return fosite.RefreshToken
	}
	return fosite.AuthorizeCode
}

// DefaultPARLifespan applies when a pushed request carries no session expiry.
const DefaultPARLifespan = 5 * time.Minute

// SessionSID is the OIDC session id (sid) a fosite session belongs to, by
// which stores index tokens for RevokeBySession: from a SessionID method if
// the session has one (Session does), else id_token_claims.ext.sid in the
// session's JSON raw.
func SessionSID(sess fosite.Session, raw []byte) string {
	if s, ok := sess.(interface{ SessionID() string }); ok {
		return s.SessionID()
	}
	var v struct {
		Claims *struct {
			Ext map[string]any `json:"ext"`
		} `json:"id_token_claims"`
	}
	if json.Unmarshal(raw, &v) != nil || v.Claims == nil {
		return ""
	}
	sid, _ := v.Claims.Ext["sid"].(string)
	return sid
}
