package memory

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/storage"

	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/store"
)

// fosite token storage (idp.OAuthStore). Rows are copies: the requester is
// serialised on the way in and rebuilt on the way out, exactly as the
// Postgres adapter does, so fosite never shares memory with the store.

var (
	_ idp.OAuthStore        = (*Store)(nil)
	_ storage.Transactional = (*Store)(nil)
)

type oauthKey struct {
	kind string
	hash [sha256.Size]byte
}

type oauthToken struct {
	requestID       string
	clientID        string
	requestedAt     time.Time
	scopes          []string
	grantedScopes   []string
	audiences       []string
	grantedAudience []string
	form            string
	subject         string
	session         []byte
	sid             string
	active          bool
	expiresAt       time.Time // zero: never
	// refresh tokens only
	accessHash  [sha256.Size]byte
	hasAccess   bool
	firstUsedAt time.Time // rotation time
	graceUsed   bool
	revokedAt   time.Time
}

type oauthPAR struct {
	requestID           string
	clientID            string
	requestedAt         time.Time
	scopes              []string
	audiences           []string
	form                string
	responseTypes       []string
	redirectURI         string
	state               string
	responseMode        string
	defaultResponseMode string
	expiresAt           time.Time
}

type oauthState struct {
	tokens map[oauthKey]*oauthToken
	par    map[[sha256.Size]byte]*oauthPAR
	jti    map[[sha256.Size]byte]time.Time
}

func (o *oauthState) init() {
	o.tokens = map[oauthKey]*oauthToken{}
	o.par = map[[sha256.Size]byte]*oauthPAR{}
	o.jti = map[[sha256.Size]byte]time.Time{}
}

func sigHash(sig string) [sha256.Size]byte { return sha256.Sum256([]byte(sig)) }

func args(s []string) fosite.Arguments {
	out := make(fosite.Arguments, len(s))
	copy(out, s)
	return out
}

func newOAuthToken(kind string, req fosite.Requester) (*oauthToken, error) {
	if req == nil || req.GetClient() == nil {
		return nil, errors.New("request without client")
	}
	sess := req.GetSession()
	raw, err := idp.EncodeSession(sess)
	if err != nil {
		return nil, fmt.Errorf("encode session: %w", err)
	}
	t := &oauthToken{
		requestID:       req.GetID(),
		clientID:        req.GetClient().GetID(),
		requestedAt:     req.GetRequestedAt().UTC().Truncate(time.Microsecond),
		scopes:          args(req.GetRequestedScopes()),
		grantedScopes:   args(req.GetGrantedScopes()),
		audiences:       args(req.GetRequestedAudience()),
		grantedAudience: args(req.GetGrantedAudience()),
		form:            idp.StoredTokenForm(req.GetRequestForm()),
		session:         raw,
		sid:             idp.SessionSID(sess, raw),
		active:          true,
	}
	if sess != nil {
		t.subject = sess.GetSubject()
		t.expiresAt = sess.GetExpiresAt(idp.TokenKindType(kind)).UTC()
	}
	return t, nil
}

func (s *Store) createToken(ctx context.Context, kind, sig string, req fosite.Requester) error {
	t, err := newOAuthToken(kind, req)
	if err != nil {
		return fmt.Errorf("create %s: %w", kind, err)
	}
	return s.insertToken(ctx, kind, sig, t)
}

// insertToken adds a row for a known client (as the Postgres foreign key
// does).
func (s *Store) insertToken(ctx context.Context, kind, sig string, t *oauthToken) error {
	if _, err := s.GetClient(ctx, t.clientID); err != nil {
		return fmt.Errorf("create %s: client %q: %w", kind, t.clientID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := oauthKey{kind, sigHash(sig)}
	if _, ok := s.oauth.tokens[k]; ok {
		return fmt.Errorf("create %s: %w", kind, store.ErrExists)
	}
	s.oauth.tokens[k] = t
	return nil
}

// lookup returns a copy of the row, or nil.
func (s *Store) lookup(kind, sig string) *oauthToken {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.oauth.tokens[oauthKey{kind, sigHash(sig)}]
	if !ok {
		return nil
	}
	c := *t
	return &c
}

func (s *Store) expired(t time.Time) bool {
	return !t.IsZero() && !s.now().Before(t)
}

// requester rebuilds the stored request, decoding the session into session
// (which may be nil) and reloading the client.
func (s *Store) requester(ctx context.Context, t *oauthToken, session fosite.Session) (fosite.Requester, error) {
	if session != nil {
		if err := json.Unmarshal(t.session, session); err != nil {
			return nil, fmt.Errorf("decode session: %w", err)
		}
	}
	client, err := s.GetClient(ctx, t.clientID)
	if err != nil {
		return nil, fmt.Errorf("load client %q: %w", t.clientID, err)
	}
	form, err := url.ParseQuery(t.form)
	if err != nil {
		return nil, fmt.Errorf("decode form: %w", err)
	}
	return &fosite.Request{
		ID:                t.requestID,
		RequestedAt:       t.requestedAt,
		Client:            client,
		RequestedScope:    args(t.scopes),
		GrantedScope:      args(t.grantedScopes),
		Form:              form,
		Session:           session,
		RequestedAudience: args(t.audiences),
		GrantedAudience:   args(t.grantedAudience),
	}, nil
}

// getActive reads a kind whose rows are either usable or gone.
func (s *Store) getActive(ctx context.Context, kind, sig string, session fosite.Session) (fosite.Requester, error) {
	t := s.lookup(kind, sig)
	if t == nil || s.expired(t.expiresAt) {
		return nil, fmt.Errorf("get %s: %w", kind, fosite.ErrNotFound)
	}
	return s.requester(ctx, t, session)
}

func (s *Store) deleteToken(kind, sig string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.oauth.tokens, oauthKey{kind, sigHash(sig)})
}

// ---- authorize codes ----

// CreateAuthorizeCodeSession stores the request behind an authorize code.
func (s *Store) CreateAuthorizeCodeSession(ctx context.Context, sig string, req fosite.Requester) error {
	return s.createToken(ctx, idp.TokenKindCode, sig, req)
}

// GetAuthorizeCodeSession returns the request behind a code. After
// InvalidateAuthorizeCodeSession it returns the request together with
// fosite.ErrInvalidatedAuthorizeCode, so that fosite can revoke the grant.
func (s *Store) GetAuthorizeCodeSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	t := s.lookup(idp.TokenKindCode, sig)
	if t == nil {
		return nil, fmt.Errorf("get authorize code: %w", fosite.ErrNotFound)
	}
	if !t.active {
		req, err := s.requester(ctx, t, session)
		if err != nil {
			return nil, err
		}
		idp.NoteCodeReused(ctx)
		return req, fosite.ErrInvalidatedAuthorizeCode
	}
	if s.expired(t.expiresAt) {
		return nil, fmt.Errorf("get authorize code: %w", fosite.ErrNotFound)
	}
	return s.requester(ctx, t, session)
}

// InvalidateAuthorizeCodeSession marks a code used.
func (s *Store) InvalidateAuthorizeCodeSession(_ context.Context, sig string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.oauth.tokens[oauthKey{idp.TokenKindCode, sigHash(sig)}]
	if !ok {
		return fmt.Errorf("invalidate authorize code: %w", fosite.ErrNotFound)
	}
	if !t.active {
		// Already spent: a concurrent exchange of the same code got there
		// first.
		return fmt.Errorf("invalidate authorize code: %w", fosite.ErrInvalidatedAuthorizeCode)
	}
	t.active = false
	return nil
}

// ---- PKCE and OpenID Connect (keyed by the authorize code) ----

// CreatePKCERequestSession stores the PKCE challenge of an authorize code.
func (s *Store) CreatePKCERequestSession(ctx context.Context, sig string, req fosite.Requester) error {
	return s.createToken(ctx, idp.TokenKindPKCE, sig, req)
}

// GetPKCERequestSession returns the PKCE request, or fosite.ErrNotFound.
func (s *Store) GetPKCERequestSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return s.getActive(ctx, idp.TokenKindPKCE, sig, session)
}

// DeletePKCERequestSession removes the PKCE request.
func (s *Store) DeletePKCERequestSession(_ context.Context, sig string) error {
	s.deleteToken(idp.TokenKindPKCE, sig)
	return nil
}

// CreateOpenIDConnectSession stores the OIDC request of an authorize code.
func (s *Store) CreateOpenIDConnectSession(ctx context.Context, code string, req fosite.Requester) error {
	return s.createToken(ctx, idp.TokenKindOIDC, code, req)
}

// GetOpenIDConnectSession returns the OIDC request, decoding its session
// into req's, or fosite.ErrNotFound.
func (s *Store) GetOpenIDConnectSession(ctx context.Context, code string, req fosite.Requester) (fosite.Requester, error) {
	var sess fosite.Session
	if req != nil {
		sess = req.GetSession()
	}
	return s.getActive(ctx, idp.TokenKindOIDC, code, sess)
}

// DeleteOpenIDConnectSession removes the OIDC request.
func (s *Store) DeleteOpenIDConnectSession(_ context.Context, code string) error {
	s.deleteToken(idp.TokenKindOIDC, code)
	return nil
}

// ---- access tokens ----

// CreateAccessTokenSession stores an access token's request.
func (s *Store) CreateAccessTokenSession(ctx context.Context, sig string, req fosite.Requester) error {
	return s.createToken(ctx, idp.TokenKindAccess, sig, req)
}

// GetAccessTokenSession returns an access token's request, or
// fosite.ErrNotFound when it is unknown, revoked or expired.
func (s *Store) GetAccessTokenSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return s.getActive(ctx, idp.TokenKindAccess, sig, session)
}

// DeleteAccessTokenSession removes an access token.
func (s *Store) DeleteAccessTokenSession(_ context.Context, sig string) error {
	s.deleteToken(idp.TokenKindAccess, sig)
	return nil
}

// RevokeAccessToken removes every access token of a grant.
func (s *Store) RevokeAccessToken(_ context.Context, requestID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.oauth.tokens {
		if k.kind == idp.TokenKindAccess && t.requestID == requestID {
			delete(s.oauth.tokens, k)
		}
	}
	return nil
}

// ---- refresh tokens ----

// CreateRefreshTokenSession stores a refresh token's request and the access
// token issued with it.
func (s *Store) CreateRefreshTokenSession(ctx context.Context, sig, accessSig string, req fosite.Requester) error {
	t, err := newOAuthToken(idp.TokenKindRefresh, req)
	if err != nil {
		return fmt.Errorf("create refresh: %w", err)
	}
	if accessSig != "" {
		t.accessHash, t.hasAccess = sigHash(accessSig), true
	}
	return s.insertToken(ctx, idp.TokenKindRefresh, sig, t)
}

// inGrace reports whether a rotated, unrevoked refresh token may still be
// used once (idp.RefreshGraceFromContext after its rotation).
func inGrace(t *oauthToken, grace time.Duration, now time.Time) bool {
	return !t.active && t.revokedAt.IsZero() && !t.firstUsedAt.IsZero() && !t.graceUsed &&
		grace > 0 && now.Before(t.firstUsedAt.Add(grace))
}

// GetRefreshTokenSession returns a refresh token's request. A rotated or
// revoked token comes back with fosite.ErrInactiveToken and its request
// (fosite then revokes the grant), except within the grace period after
// rotation, when it is returned as active until its one grace use is spent
// by RotateRefreshToken. Reading does not spend the grace, so introspection
// and revocation have no side effect.
func (s *Store) GetRefreshTokenSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	t := s.lookup(idp.TokenKindRefresh, sig)
	if t == nil {
		return nil, fmt.Errorf("get refresh: %w", fosite.ErrNotFound)
	}
	if !t.active && !inGrace(t, idp.RefreshGraceFromContext(ctx), s.now()) {
		req, err := s.requester(ctx, t, session)
		if err != nil {
			return nil, err
		}
		return req, fosite.ErrInactiveToken
	}
	if s.expired(t.expiresAt) {
		return nil, fmt.Errorf("get refresh: %w", fosite.ErrNotFound)
	}
	return s.requester(ctx, t, session)
}

// DeleteRefreshTokenSession removes a refresh token.
func (s *Store) DeleteRefreshTokenSession(_ context.Context, sig string) error {
	s.deleteToken(idp.TokenKindRefresh, sig)
	return nil
}

// RotateRefreshToken retires a refresh token that has just been exchanged,
// and removes the access token issued with it. Rotating an already rotated
// token spends its one grace use (if still in the grace period); otherwise
// it fails with fosite.ErrInactiveToken, which fosite reports as a retry.
func (s *Store) RotateRefreshToken(ctx context.Context, requestID, sig string) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.oauth.tokens[oauthKey{idp.TokenKindRefresh, sigHash(sig)}]
	if !ok || t.requestID != requestID {
		return fmt.Errorf("rotate refresh: %w", fosite.ErrNotFound)
	}
	switch {
	case t.active:
		t.active = false
		t.firstUsedAt = now
		if t.hasAccess {
			delete(s.oauth.tokens, oauthKey{idp.TokenKindAccess, t.accessHash})
		}
		return nil
	case inGrace(t, idp.RefreshGraceFromContext(ctx), now):
		t.graceUsed = true
		return nil
	}
	return fmt.Errorf("rotate refresh: %w", fosite.ErrInactiveToken)
}

// RevokeRefreshToken revokes every refresh token of a grant (no grace).
func (s *Store) RevokeRefreshToken(_ context.Context, requestID string) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.oauth.tokens {
		if k.kind == idp.TokenKindRefresh && t.requestID == requestID && t.revokedAt.IsZero() {
			t.active = false
			t.revokedAt = now
		}
	}
	return nil
}

// RevokeBySession revokes every access and refresh token whose session
// carries sid, and returns how many usable tokens it revoked.
func (s *Store) RevokeBySession(_ context.Context, sid string) (int, error) {
	if sid == "" {
		return 0, nil
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, t := range s.oauth.tokens {
		if t.sid != sid {
			continue
		}
		switch k.kind {
		case idp.TokenKindAccess:
			delete(s.oauth.tokens, k)
			n++
		case idp.TokenKindRefresh:
			if t.active {
				n++
			}
			if t.revokedAt.IsZero() {
				t.active = false
				t.revokedAt = now
			}
		}
	}
	return n, nil
}

// ---- client assertion replay (jti) ----

// ClientAssertionJWTValid returns fosite.ErrJTIKnown if jti was seen and has
// not expired.
func (s *Store) ClientAssertionJWTValid(_ context.Context, jti string) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if exp, ok := s.oauth.jti[sigHash(jti)]; ok && now.Before(exp) {
		return fosite.ErrJTIKnown
	}
	return nil
}

// SetClientAssertionJWT records jti until exp, first dropping expired ones;
// a jti still recorded gives fosite.ErrJTIKnown.
func (s *Store) SetClientAssertionJWT(_ context.Context, jti string, exp time.Time) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.oauth.jti {
		if !now.Before(e) {
			delete(s.oauth.jti, k)
		}
	}
	k := sigHash(jti)
	if _, ok := s.oauth.jti[k]; ok {
		return fosite.ErrJTIKnown
	}
	s.oauth.jti[k] = exp
	return nil
}

// ---- pushed authorization requests ----

// CreatePARSession stores a pushed authorization request under its
// request_uri (hashed). Client credentials in its form are dropped.
func (s *Store) CreatePARSession(ctx context.Context, requestURI string, ar fosite.AuthorizeRequester) error {
	if ar == nil || ar.GetClient() == nil {
		return errors.New("create par: request without client")
	}
	if _, err := s.GetClient(ctx, ar.GetClient().GetID()); err != nil {
		return fmt.Errorf("create par: client %q: %w", ar.GetClient().GetID(), err)
	}
	form := url.Values{}
	for k, v := range ar.GetRequestForm() {
		form[k] = append([]string(nil), v...)
	}
	for _, k := range idp.PARSecretParams {
		form.Del(k)
	}
	p := &oauthPAR{
		requestID:           ar.GetID(),
		clientID:            ar.GetClient().GetID(),
		requestedAt:         ar.GetRequestedAt().UTC().Truncate(time.Microsecond),
		scopes:              args(ar.GetRequestedScopes()),
		audiences:           args(ar.GetRequestedAudience()),
		form:                form.Encode(),
		responseTypes:       args(ar.GetResponseTypes()),
		state:               ar.GetState(),
		responseMode:        string(ar.GetResponseMode()),
		defaultResponseMode: string(ar.GetDefaultResponseMode()),
	}
	if u := ar.GetRedirectURI(); u != nil {
		p.redirectURI = u.String()
	}
	if sess := ar.GetSession(); sess != nil {
		p.expiresAt = sess.GetExpiresAt(fosite.PushedAuthorizeRequestContext).UTC()
	}
	if p.expiresAt.IsZero() {
		p.expiresAt = s.now().Add(idp.DefaultPARLifespan)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := sigHash(requestURI)
	if _, ok := s.oauth.par[k]; ok {
		return fmt.Errorf("create par: %w", store.ErrExists)
	}
	s.oauth.par[k] = p
	return nil
}

// GetPARSession rebuilds a pushed authorization request (without a
// session: the caller sets one in NewAuthorizeResponse), or returns
// fosite.ErrNotFound when it is unknown or expired.
func (s *Store) GetPARSession(ctx context.Context, requestURI string) (fosite.AuthorizeRequester, error) {
	s.mu.Lock()
	p, ok := s.oauth.par[sigHash(requestURI)]
	var c oauthPAR
	if ok {
		c = *p
	}
	s.mu.Unlock()
	if !ok || s.expired(c.expiresAt) {
		return nil, fmt.Errorf("get par: %w", fosite.ErrNotFound)
	}
	client, err := s.GetClient(ctx, c.clientID)
	if err != nil {
		return nil, fmt.Errorf("get par: load client %q: %w", c.clientID, err)
	}
	return rebuildPAR(&c, client)
}

func rebuildPAR(p *oauthPAR, client fosite.Client) (*fosite.AuthorizeRequest, error) {
	ar := fosite.NewAuthorizeRequest()
	ar.ID = p.requestID
	ar.RequestedAt = p.requestedAt
	ar.Client = client
	ar.RequestedScope = args(p.scopes)
	ar.RequestedAudience = args(p.audiences)
	ar.ResponseTypes = args(p.responseTypes)
	ar.State = p.state
	ar.ResponseMode = fosite.ResponseModeType(p.responseMode)
	ar.DefaultResponseMode = fosite.ResponseModeType(p.defaultResponseMode)
	ar.Session = nil
	form, err := url.ParseQuery(p.form)
	if err != nil {
		return nil, fmt.Errorf("get par: decode form: %w", err)
	}
	ar.Form = form
	if p.redirectURI != "" {
		u, err := url.Parse(p.redirectURI)
		if err != nil {
			return nil, fmt.Errorf("get par: redirect uri: %w", err)
		}
		ar.RedirectURI = u
	}
	return ar, nil
}

// DeletePARSession removes a pushed authorization request.
func (s *Store) DeletePARSession(_ context.Context, requestURI string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.oauth.par, sigHash(requestURI))
	return nil
}

// ---- transactions ----

// BeginTX is a no-op: every memory method is atomic on its own, and the
// memory store does not roll back.
func (s *Store) BeginTX(ctx context.Context) (context.Context, error) { return ctx, nil }

// Commit is a no-op (see BeginTX).
func (s *Store) Commit(context.Context) error { return nil }

// Rollback is a no-op (see BeginTX).
func (s *Store) Rollback(context.Context) error { return nil }

// PurgeExpiredOAuth drops codes, tokens, PAR requests and jtis that expired
// before the given time (for the GC job); refresh tokens without an expiry
// stay. It returns how many rows it removed.
func (s *Store) PurgeExpiredOAuth(_ context.Context, before time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, t := range s.oauth.tokens {
		if !t.expiresAt.IsZero() && t.expiresAt.Before(before) {
			delete(s.oauth.tokens, k)
			n++
		}
	}
	for k, p := range s.oauth.par {
		if p.expiresAt.Before(before) {
			delete(s.oauth.par, k)
			n++
		}
	}
	for k, e := range s.oauth.jti {
		if e.Before(before) {
			delete(s.oauth.jti, k)
			n++
		}
	}
	return n, nil
}
