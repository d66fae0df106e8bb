package idp

import (
	"context"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/storage"
	"github.com/ory/fosite/token/jwt"

	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/internal/detach"
	"github.com/nhsid/nhsid/store"
)

// Paths served by the provider.
const (
	PathDiscovery  = "/.well-known/openid-configuration"
	PathJWKS       = "/jwks.json"
	PathAuthorize  = "/oauth2/authorize"
	PathResume     = "/oauth2/authorize/resume"
	PathToken      = "/oauth2/token"
	PathUserinfo   = "/oauth2/userinfo"
	PathIntrospect = "/oauth2/introspect"
	PathRevoke     = "/oauth2/revoke"
	PathPAR        = "/oauth2/par"
	PathLogout     = "/oauth2/logout"
)

// parURIPrefix is the prefix of PAR request_uri values.
const parURIPrefix = "urn:ietf:params:oauth:request_uri:"

// Provider is nhsid's OpenID Connect provider.
type Provider struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	now    func() time.Time
	oauth  *fosite.Fosite
	fcfg   *fositeConfig
	tokens *tokenStrategy // how codes and tokens are made and checked
	hasher SecretHasher
	keys   *keySet
	claims []ClaimSource
	logout *logoutState // back-channel logout (backchannel.go)
	// knownUse: pairs whose client.first_use is recorded (knownuse.go)
	knownUse knownUse
	// resumeSealers seal and open the results of sign-ins completed in
	// the login finish (complete.go).
	resumeSealers []cipher.AEAD

	discovery []byte
}

// New validates cfg, composes fosite and loads (creating if needed) the
// signing keys.
func New(cfg Config, deps Deps) (*Provider, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("idp config: %w", err)
	}
	if deps.Store == nil || deps.People == nil || deps.Authn == nil {
		return nil, errors.New("idp: Store, People and Authn are required")
	}
	p := &Provider{cfg: cfg, deps: deps, log: deps.Log, now: deps.Now, keys: &keySet{}, claims: deps.Claims}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if len(p.claims) == 0 {
		p.claims = []ClaimSource{DefaultClaims{}}
	}
	p.hasher = SecretHasher{Pepper: cfg.SecretPepper}
	var err error
	if p.resumeSealers, err = resumeSealers(cfg); err != nil {
		return nil, err
	}
	p.logout = newLogoutState(cfg.Logout, deps.Outbound)

	fc := &fosite.Config{
		AccessTokenLifespan:            cfg.AccessTokenTTL,
		RefreshTokenLifespan:           cfg.RefreshTTL,
		AuthorizeCodeLifespan:          cfg.AuthCodeTTL,
		IDTokenLifespan:                cfg.IDTokenTTL,
		IDTokenIssuer:                  cfg.Issuer,
		AccessTokenIssuer:              cfg.Issuer,
		TokenURL:                       cfg.Issuer + PathToken,
		GlobalSecret:                   cfg.GlobalSecret,
		RotatedGlobalSecrets:           cfg.RotatedGlobalSecrets,
		SendDebugMessagesToClients:     false,
		ScopeStrategy:                  fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:       fosite.DefaultAudienceMatchingStrategy,
		EnforcePKCE:                    false,
		EnforcePKCEForPublicClients:    true,
		EnablePKCEPlainChallengeMethod: false,
		// An empty slice: a client with the refresh_token grant gets a
		// refresh token without asking for offline_access (CIS2 RPs do).
		RefreshTokenScopes:              []string{},
		JWTScopeClaimKey:                jwt.JWTScopeFieldString,
		ClientSecretsHasher:             p.hasher,
		JWKSFetcherStrategy:             jwksFetcher(p.logout.http),
		MinParameterEntropy:             fosite.MinParameterEntropy,
		PushedAuthorizeRequestURIPrefix: parURIPrefix,
		PushedAuthorizeContextLifespan:  cfg.PARTTL,
		IsPushedAuthorizeEnforced:       false,
		AllowedPromptValues:             []string{"login", "none", "consent", "select_account"},
	}
	p.fcfg = &fositeConfig{Config: fc, issuer: cfg.Issuer}

	signer := keySigner{p: p}
	hmacStrategy := compose.NewOAuth2HMACStrategy(p.fcfg)
	makers := make([]*oauth2.HMACSHAStrategy, hmacMakers)
	for i := range makers {
		makers[i] = compose.NewOAuth2HMACStrategy(p.fcfg)
	}
	p.tokens = &tokenStrategy{
		now:    p.now,
		hmac:   hmacStrategy,
		makers: makers,
		jwt:    &oauth2.DefaultJWTStrategy{Signer: signer, HMACSHAStrategy: hmacStrategy, Config: p.fcfg},
	}
	strategy := &compose.CommonStrategy{
		CoreStrategy:               p.tokens,
		OpenIDConnectTokenStrategy: &openid.DefaultStrategy{Signer: signer, Config: p.fcfg},
		Signer:                     signer,
	}
	st := withTokenAudit(fositeStorage(deps.Store), p)
	p.oauth = fosite.NewOAuth2Provider(st, p.fcfg)
	for _, factory := range []compose.Factory{
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OpenIDConnectExplicitFactory,
		compose.OpenIDConnectRefreshFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
		compose.OAuth2PKCEFactory,
		compose.PushedAuthorizeHandlerFactory,
	} {
		res := factory(p.fcfg, st, strategy)
		if h, ok := res.(fosite.AuthorizeEndpointHandler); ok {
			fc.AuthorizeEndpointHandlers.Append(h)
		}
		if h, ok := res.(fosite.TokenEndpointHandler); ok {
			// Not Append: it drops a second handler of the same type,
			// and every wrapper has one type.
			fc.TokenEndpointHandlers = append(fc.TokenEndpointHandlers, quietTokenHandler{h})
		}
		if h, ok := res.(fosite.TokenIntrospector); ok {
			fc.TokenIntrospectionHandlers.Append(h)
		}
		if h, ok := res.(fosite.RevocationHandler); ok {
			fc.RevocationHandlers.Append(h)
		}
		if h, ok := res.(fosite.PushedAuthorizeEndpointHandler); ok {
			fc.PushedAuthorizeEndpointHandlers.Append(h)
		}
	}

	d, err := json.MarshalIndent(p.discoveryDocument(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render discovery: %w", err)
	}
	p.discovery = d

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.EnsureKeys(ctx); err != nil {
		return nil, fmt.Errorf("idp keys: %w", err)
	}
	return p, nil
}

// Mount registers the provider's endpoints on mux.
func (p *Provider) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathDiscovery, p.handleDiscovery)
	mux.HandleFunc("GET "+PathJWKS, p.handleJWKS)
	mux.HandleFunc("GET "+PathAuthorize, p.gate(p.handleAuthorize))
	mux.HandleFunc("POST "+PathAuthorize, p.gate(p.handleAuthorize))
	mux.HandleFunc("GET "+PathResume, p.gate(p.handleResume))
	mux.HandleFunc("POST "+PathToken, p.gate(p.handleToken))
	mux.HandleFunc("GET "+PathUserinfo, p.gate(p.handleUserinfo))
	mux.HandleFunc("POST "+PathUserinfo, p.gate(p.handleUserinfo))
	mux.HandleFunc("POST "+PathIntrospect, p.gate(p.handleIntrospect))
	mux.HandleFunc("POST "+PathRevoke, p.gate(p.handleRevoke))
	mux.HandleFunc("POST "+PathPAR, p.gate(p.handlePAR))
	mux.HandleFunc("GET "+PathLogout, p.handleLogout)
	mux.HandleFunc("POST "+PathLogout, p.handleLogout)
}

// OAuth2Provider exposes the composed fosite provider (for logout and
// admin-token validation elsewhere in nhsid).
func (p *Provider) OAuth2Provider() fosite.OAuth2Provider { return p.oauth }

// Ready reports whether signing keys are loaded (for /readyz).
func (p *Provider) Ready(context.Context) error {
	if _, err := p.signingKey(p.cfg.KeyAlg); err != nil {
		return err
	}
	return nil
}

// gate answers 503 temporarily_unavailable while Deps.Ready fails, so a
// store outage never reaches fosite (which would report invalid_client).
func (p *Provider) gate(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p.deps.Ready != nil {
			if err := p.deps.Ready(r.Context()); err != nil {
				p.log.WarnContext(r.Context(), "oauth endpoint unavailable", "path", r.URL.Path, "err", err)
				writeUnavailable(w)
				return
			}
		}
		h(w, r)
	}
}

func writeUnavailable(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", "5")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(`{"error":"temporarily_unavailable","error_description":"The service is temporarily unavailable. Try again shortly."}`))
}

// unavailable reports whether err comes from a store outage.
func unavailable(err error) bool { return errors.Is(err, store.ErrUnavailable) }

func (p *Provider) handleToken(w http.ResponseWriter, r *http.Request) {
	// A token request's writes (a code spent and the tokens it buys, the
	// revocation of a reused code's or refresh token's grant, their audit
	// records) are carried through even when the client hangs up: leaving
	// must not stop a reused code's grant being revoked, or erase the
	// record of it. The request deadline still bounds them.
	ctx, cancel := detach.Context(r.Context())
	defer cancel()
	r = r.WithContext(ctx)
	var reuse *codeReuse
	switch r.PostFormValue("grant_type") {
	case "refresh_token":
		ctx = WithRefreshGrace(ctx, p.cfg.RefreshGrace)
	case "authorization_code":
		// fosite looks up the code's row twice, then its PKCE and OIDC rows
		code := r.PostFormValue("code")
		ctx = store.WithCodeReadAhead(ctx, p.deps.Store, code, p.tokens.AuthorizeCodeSignature(ctx, code))
		ctx, reuse = withCodeReuseNote(ctx)
	}
	sess := NewSession()
	ar, err := p.oauth.NewAccessRequest(ctx, r, sess)
	if err != nil {
		if unavailable(err) {
			writeUnavailable(w)
			return
		}
		p.log.InfoContext(ctx, "token request rejected", "err", err)
		p.auditTokenRefused(ctx, r, ar, err)
		if reuse != nil && reuse.seen.Load() {
			// fosite found the code spent and revoked its grant; it tells
			// of a revocation that failed only in its hint.
			revoked := !strings.Contains(fosite.ErrorToRFC6749Error(err).HintField, "error occurred during processing the")
			p.auditCodeReused(ctx, r, ar, revoked, false)
		}
		p.oauth.WriteAccessError(ctx, w, ar, err)
		return
	}
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		ar.SetID(newRequestID())
		c, _ := ar.GetClient().(*Client)
		for _, s := range ar.GetRequestedScopes() {
			ar.GrantScope(s)
		}
		for _, a := range ar.GetRequestedAudience() {
			ar.GrantAudience(a)
		}
		sess.ForClient(ar.GetClient().GetID())
		if len(ar.GetGrantedAudience()) == 0 && c != nil {
			for _, a := range c.Audience {
				ar.GrantAudience(a)
			}
		}
	}
	resp, err := p.newAccessResponse(ctx, ar)
	if err != nil {
		if unavailable(err) {
			writeUnavailable(w)
			return
		}
		if errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
			// A concurrent exchange of the same code spent it first (the
			// store's invalidation found it spent); fosite would call that
			// a server error. As for a later reuse, which fosite handles,
			// the grant the code bought is revoked (RFC 6749 section 4.1.2).
			err = fosite.ErrInvalidGrant.WithHint("The authorization code has already been used.").WithWrap(err)
			p.auditCodeReused(ctx, r, ar, p.revokeGrant(ctx, ar.GetID()), true)
		}
		p.log.InfoContext(ctx, "token response failed", "err", err)
		p.oauth.WriteAccessError(ctx, w, ar, err)
		return
	}
	p.oauth.WriteAccessResponse(ctx, w, ar, resp)
}

func (p *Provider) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ir, err := p.oauth.NewIntrospectionRequest(ctx, r, NewSession())
	if err != nil {
		if unavailable(err) {
			writeUnavailable(w)
			return
		}
		p.oauth.WriteIntrospectionError(ctx, w, err)
		return
	}
	if err := p.auditIntrospection(ctx, r, ir); err != nil {
		p.log.Log(ctx, apierror.FailureLevel(r), "introspect: audit", "err", err)
		p.oauth.WriteIntrospectionError(ctx, w, fosite.ErrServerError.WithWrap(err))
		return
	}
	p.oauth.WriteIntrospectionResponse(ctx, w, ir)
}

func (p *Provider) handleRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	err := p.oauth.NewRevocationRequest(ctx, r)
	if err != nil && unavailable(err) {
		writeUnavailable(w)
		return
	}
	if aerr := p.auditRevoke(ctx, r, err); aerr != nil {
		p.log.ErrorContext(ctx, "revoke: audit", "err", aerr)
		err = fosite.ErrServerError.WithWrap(aerr)
	}
	p.oauth.WriteRevocationResponse(ctx, w, err)
}

func (p *Provider) handlePAR(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := p.oauth.NewPushedAuthorizeRequest(ctx, r)
	if err != nil {
		if unavailable(err) {
			writeUnavailable(w)
			return
		}
		p.oauth.WritePushedAuthorizeError(ctx, w, ar, err)
		return
	}
	if c, ok := ar.GetClient().(*Client); ok && c.Disabled {
		p.oauth.WritePushedAuthorizeError(ctx, w, ar, fosite.ErrInvalidClient.WithHint("The client is disabled."))
		return
	}
	resp, err := p.oauth.NewPushedAuthorizeResponse(ctx, ar, NewSession())
	if err != nil {
		p.oauth.WritePushedAuthorizeError(ctx, w, ar, err)
		return
	}
	p.oauth.WritePushedAuthorizeResponse(ctx, w, ar, resp)
}

// tokenStrategy issues opaque (HMAC) access tokens, or RFC 9068 JWT access
// tokens for clients whose nhsid_access_token_format is "jwt". Codes and
// refresh tokens are always opaque. Tokens are told apart by shape.
//
// fosite's HMAC strategy makes every token under one mutex (which guards
// nothing a token needs), so concurrent token requests queued for it:
// opaque tokens are made by makers, copies of hmac taken in turn, and
// only checked by hmac itself.
//
// Opaque tokens carry their issue time in a tag after fosite's token
// (tokentag.go), which hmac's checks do not see.
type tokenStrategy struct {
	now    func() time.Time
	hmac   *oauth2.HMACSHAStrategy
	makers []*oauth2.HMACSHAStrategy
	next   atomic.Uint32
	jwt    *oauth2.DefaultJWTStrategy
}

// hmacMakers is how many copies of the HMAC strategy make tokens.
const hmacMakers = 16

// maker is the next copy of the HMAC strategy to make a token with.
func (s *tokenStrategy) maker() *oauth2.HMACSHAStrategy {
	if len(s.makers) == 0 {
		return s.hmac
	}
	return s.makers[s.next.Add(1)%uint32(len(s.makers))]
}

var _ oauth2.CoreStrategy = (*tokenStrategy)(nil)

func isJWT(token string) bool { return strings.Count(token, ".") == 2 }

func (s *tokenStrategy) AccessTokenSignature(ctx context.Context, token string) string {
	if isJWT(token) {
		return s.jwt.AccessTokenSignature(ctx, token)
	}
	return s.hmac.AccessTokenSignature(ctx, token)
}

func (s *tokenStrategy) GenerateAccessToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	if c, ok := r.GetClient().(*Client); ok && c.AccessTokenFormat == "jwt" {
		if sess, ok := r.GetSession().(*Session); ok {
			claims := sess.GetJWTClaims().(*jwt.JWTClaims)
			claims.JTI = uuid.NewString()
			claims.IssuedAt = time.Time{}
			claims.Extra["client_id"] = c.ID
		}
		return s.jwt.GenerateAccessToken(ctx, r)
	}
	token, sig, err := s.maker().GenerateAccessToken(ctx, r)
	return tagged(s.now(), token, sig, err)
}

func (s *tokenStrategy) ValidateAccessToken(ctx context.Context, r fosite.Requester, token string) error {
	if isJWT(token) {
		return s.jwt.ValidateAccessToken(ctx, r, token)
	}
	return s.hmac.ValidateAccessToken(ctx, r, untagged(token))
}

func (s *tokenStrategy) RefreshTokenSignature(ctx context.Context, token string) string {
	return s.hmac.RefreshTokenSignature(ctx, token)
}

func (s *tokenStrategy) GenerateRefreshToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	token, sig, err := s.maker().GenerateRefreshToken(ctx, r)
	return tagged(s.now(), token, sig, err)
}

func (s *tokenStrategy) ValidateRefreshToken(ctx context.Context, r fosite.Requester, token string) error {
	return s.hmac.ValidateRefreshToken(ctx, r, untagged(token))
}

func (s *tokenStrategy) AuthorizeCodeSignature(ctx context.Context, token string) string {
	return s.hmac.AuthorizeCodeSignature(ctx, token)
}

func (s *tokenStrategy) GenerateAuthorizeCode(ctx context.Context, r fosite.Requester) (string, string, error) {
	token, sig, err := s.maker().GenerateAuthorizeCode(ctx, r)
	return tagged(s.now(), token, sig, err)
}

func (s *tokenStrategy) ValidateAuthorizeCode(ctx context.Context, r fosite.Requester, token string) error {
	return s.hmac.ValidateAuthorizeCode(ctx, r, untagged(token))
}

// clientGate is the storage fosite sees: the Store, with disabled clients
// reported as not found.
type clientGate struct{ Store }

func (g clientGate) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := g.Store.GetClient(ctx, id)
	if err != nil {
		return nil, err
	}
	if cl, ok := c.(*Client); ok && cl.Disabled {
		return nil, fmt.Errorf("client disabled: %w", fosite.ErrNotFound)
	}
	return c, nil
}

// ClientAssertionJWTValid lets every jti through to SetClientAssertionJWT,
// which fosite calls next for the same jti and which both stores implement
// as one atomic check-and-record (a jti still recorded fails with
// fosite.ErrJTIKnown). The separate look-up was one more database round
// trip per private_key_jwt request and, on its own, no protection against
// two requests presenting the same jti at once.
func (g clientGate) ClientAssertionJWTValid(context.Context, string) error { return nil }

// SetClientAssertionJWT records jti, answering a replay with the error
// fosite gives for one.
func (g clientGate) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	err := g.Store.SetClientAssertionJWT(ctx, jti, exp)
	if errors.Is(err, fosite.ErrJTIKnown) {
		return fosite.ErrJTIKnown.WithHint("Claim 'jti' from 'client_assertion' MUST only be used once.")
	}
	return err
}

// GetAccessTokenSession reports an access token of a disabled client as
// not found, so that disabling a client stops its opaque tokens at
// introspection and userinfo at once (its clients are cached for up to
// two seconds on other replicas).
func (g clientGate) GetAccessTokenSession(ctx context.Context, sig string, sess fosite.Session) (fosite.Requester, error) {
	r, err := g.Store.GetAccessTokenSession(ctx, sig, sess)
	if err != nil {
		return r, err
	}
	if cl, ok := r.GetClient().(*Client); ok && cl.Disabled {
		return nil, fmt.Errorf("client disabled: %w", fosite.ErrNotFound)
	}
	return r, nil
}

type clientGateTx struct {
	clientGate
	storage.Transactional
}

func fositeStorage(s Store) Store {
	if tx, ok := s.(storage.Transactional); ok {
		return clientGateTx{clientGate{s}, tx}
	}
	return clientGate{s}
}

func (p *Provider) url(path string) string { return p.cfg.Issuer + path }

// quietTokenHandler passes over a token endpoint handler that cannot handle
// the request. fosite's NewAccessResponse calls every handler's
// PopulateTokenEndpointResponse, and each one that does not apply answers
// ErrUnknownRequest wrapped with a stack trace (runtime.Callers): ~7 % of
// nhsid's CPU per client_credentials token in the profiles
// (docs/performance.md). The sentinel itself is the same answer without
// the stack. NewAccessRequest already asks CanHandleTokenEndpointRequest
// first.
type quietTokenHandler struct{ fosite.TokenEndpointHandler }

// PopulateTokenEndpointResponse implements fosite.TokenEndpointHandler.
func (h quietTokenHandler) PopulateTokenEndpointResponse(ctx context.Context, req fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, req) {
		return fosite.ErrUnknownRequest
	}
	return h.TokenEndpointHandler.PopulateTokenEndpointResponse(ctx, req, resp)
}

// newRequestID names a grant: its tokens' rows carry it (request_id), and
// revoking the grant finds them by it. fosite names requests with random
// (version 4) UUIDs, so every new grant's rows went to a random place in
// the request_id index: with millions of token rows, a random index page
// to read, dirty and log in full after each checkpoint. A version 7 UUID
// starts with the time, so new grants go together at the index's end. It
// tells no more than the token's own issue time.
func newRequestID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}
