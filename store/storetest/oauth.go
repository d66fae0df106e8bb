package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/openid"

	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/store"
)

// OAuthStore is what the fosite storage suite needs: idp.OAuthStore plus
// CreateClient to register the client that token rows point at.
type OAuthStore interface {
	idp.OAuthStore
	CreateClient(ctx context.Context, c *idp.Client) error
}

// RunOAuthTests checks an idp.OAuthStore implementation. newStore returns a
// fresh, empty store for each subtest.
func RunOAuthTests(t *testing.T, newStore func(t *testing.T) OAuthStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, s OAuthStore)
	}{
		{"AuthorizeCode", testOAuthAuthorizeCode},
		{"AuthorizeCodeUnknownClient", testOAuthUnknownClient},
		{"AccessToken", testOAuthAccessToken},
		{"RefreshToken", testOAuthRefreshToken},
		{"RefreshRotationReuse", testOAuthRefreshRotationReuse},
		{"RefreshRotationRace", testOAuthRefreshRotationRace},
		{"RefreshGrace", testOAuthRefreshGrace},
		{"RefreshGraceExpired", testOAuthRefreshGraceExpired},
		{"RefreshGraceOtherRequest", testOAuthRefreshGraceOtherRequest},
		{"RefreshGraceRevoked", testOAuthRefreshGraceRevoked},
		{"RevokeByRequest", testOAuthRevokeByRequest},
		{"RevokeBySession", testOAuthRevokeBySession},
		{"PKCE", testOAuthPKCE},
		{"OpenIDConnect", testOAuthOpenIDConnect},
		{"CodeReadAhead", testOAuthCodeReadAhead},
		{"FormSanitised", testOAuthFormSanitised},
		{"JTI", testOAuthJTI},
		{"PAR", testOAuthPAR},
		{"Expiry", testOAuthExpiry},
		{"ConcurrentJTI", testOAuthConcurrentJTI},
		{"ConcurrentRotation", testOAuthConcurrentRotation},
		{"FositeRefreshReuse", testOAuthFositeRefreshReuse},
		{"PurgeExpired", testOAuthPurgeExpired},
		{"FositeRefreshGrace", testOAuthFositeRefreshGrace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newStore(t))
		})
	}
}

func oauthID(prefix string) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}

func oauthClient(t *testing.T, s OAuthStore) *idp.Client {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	c := &idp.Client{
		ID:                      oauthID("client-"),
		Name:                    "Test RP",
		RedirectURIs:            []string{"https://rp.example/cb"},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		Scope:                   "openid profile offline_access",
		Audience:                []string{"https://api.example"},
		TokenEndpointAuthMethod: "none", // public: fosite's refresh grant needs no secret
		CreatedAt:               now,
		UpdatedAt:               now,
	}
	if err := s.CreateClient(context.Background(), c); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	return c
}

type oauthReqOpt func(*fosite.Request)

func oauthWithSID(sid string) oauthReqOpt {
	return func(r *fosite.Request) {
		r.Session.(*openid.DefaultSession).Claims.Extra = map[string]any{"sid": sid}
	}
}

func oauthWithExpiry(tt fosite.TokenType, at time.Time) oauthReqOpt {
	return func(r *fosite.Request) { r.Session.SetExpiresAt(tt, at) }
}

func oauthWithRequestID(id string) oauthReqOpt { return func(r *fosite.Request) { r.ID = id } }

// oauthRequest builds a granted request with an OIDC session, as fosite
// stores it after the user signed in.
func oauthRequest(c *idp.Client, opts ...oauthReqOpt) *fosite.Request {
	now := time.Now().UTC()
	sess := openid.NewDefaultSession()
	sess.Subject = "555000000001"
	sess.Username = "555000000001"
	sess.Claims.Subject = "555000000001"
	sess.Claims.AuthTime = now.Truncate(time.Second)
	sess.Claims.Nonce = "n-0S6_WzA2Mj"
	sess.Claims.AuthenticationContextClassReference = "AAL3_ANY"
	sess.Claims.Extra = map[string]any{"sid": "sid-default"}
	for _, tt := range []fosite.TokenType{fosite.AuthorizeCode, fosite.AccessToken, fosite.RefreshToken} {
		sess.SetExpiresAt(tt, now.Add(time.Hour))
	}
	r := fosite.NewRequest()
	r.ID = oauthID("req-")
	r.RequestedAt = now
	r.Client = c
	r.RequestedScope = fosite.Arguments{"openid", "profile", "offline_access"}
	r.GrantedScope = fosite.Arguments{"openid", "offline_access"}
	r.RequestedAudience = fosite.Arguments{"https://api.example"}
	r.GrantedAudience = fosite.Arguments{"https://api.example"}
	r.Form = url.Values{
		"client_id":     {c.ID},
		"response_type": {"code"},
		"scope":         {"openid profile offline_access"},
		"redirect_uri":  {"https://rp.example/cb"},
		"nonce":         {"n-0S6_WzA2Mj"},
		"state":         {"af0ifjsldkj"},
	}
	r.Session = sess
	for _, o := range opts {
		o(r)
	}
	return r
}

func oauthCtx() context.Context { return context.Background() }

// oauthCheckRequest compares what a store returned with what went in.
func oauthCheckRequest(t *testing.T, got fosite.Requester, want *fosite.Request) {
	t.Helper()
	if got == nil {
		t.Fatal("requester is nil")
	}
	if got.GetID() != want.ID {
		t.Errorf("ID = %q, want %q", got.GetID(), want.ID)
	}
	if got.GetClient() == nil || got.GetClient().GetID() != want.Client.GetID() {
		t.Errorf("client = %v, want %q", got.GetClient(), want.Client.GetID())
	}
	if _, ok := got.GetClient().(*idp.Client); !ok {
		t.Errorf("client is %T, want *idp.Client", got.GetClient())
	}
	if d := got.GetRequestedAt().Sub(want.RequestedAt); d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("RequestedAt = %v, want %v", got.GetRequestedAt(), want.RequestedAt)
	}
	oauthSameArgs(t, "requested scopes", got.GetRequestedScopes(), want.RequestedScope)
	oauthSameArgs(t, "granted scopes", got.GetGrantedScopes(), want.GrantedScope)
	oauthSameArgs(t, "requested audience", got.GetRequestedAudience(), want.RequestedAudience)
	oauthSameArgs(t, "granted audience", got.GetGrantedAudience(), want.GrantedAudience)
	sess, ok := got.GetSession().(*openid.DefaultSession)
	if !ok {
		t.Fatalf("session is %T", got.GetSession())
	}
	ws := want.Session.(*openid.DefaultSession)
	if sess.Subject != ws.Subject || sess.Claims.Subject != ws.Claims.Subject ||
		sess.Claims.Nonce != ws.Claims.Nonce ||
		sess.Claims.AuthenticationContextClassReference != ws.Claims.AuthenticationContextClassReference ||
		!sess.Claims.AuthTime.Equal(ws.Claims.AuthTime) {
		t.Errorf("session = %+v, want %+v", sess.Claims, ws.Claims)
	}
	if sess.Claims.Extra["sid"] != ws.Claims.Extra["sid"] {
		t.Errorf("sid = %v, want %v", sess.Claims.Extra["sid"], ws.Claims.Extra["sid"])
	}
	for _, tt := range []fosite.TokenType{fosite.AuthorizeCode, fosite.AccessToken, fosite.RefreshToken} {
		if !sess.GetExpiresAt(tt).Equal(ws.GetExpiresAt(tt)) {
			t.Errorf("expiry %s = %v, want %v", tt, sess.GetExpiresAt(tt), ws.GetExpiresAt(tt))
		}
	}
}

func oauthSameArgs(t *testing.T, what string, got, want fosite.Arguments) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
		return
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("%s = %v, want %v", what, got, want)
			return
		}
	}
}

func oauthWantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func oauthOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func testOAuthAuthorizeCode(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	req := oauthRequest(c)
	oauthOK(t, "create", s.CreateAuthorizeCodeSession(oauthCtx(), "code-sig", req))

	got, err := s.GetAuthorizeCodeSession(oauthCtx(), "code-sig", openid.NewDefaultSession())
	oauthOK(t, "get", err)
	oauthCheckRequest(t, got, req)
	if got.GetRequestForm().Get("redirect_uri") != "https://rp.example/cb" {
		t.Errorf("redirect_uri not kept: %v", got.GetRequestForm())
	}

	_, err = s.GetAuthorizeCodeSession(oauthCtx(), "other-sig", openid.NewDefaultSession())
	oauthWantErr(t, "get unknown", err, fosite.ErrNotFound)

	oauthOK(t, "invalidate", s.InvalidateAuthorizeCodeSession(oauthCtx(), "code-sig"))
	got, err = s.GetAuthorizeCodeSession(oauthCtx(), "code-sig", openid.NewDefaultSession())
	oauthWantErr(t, "get invalidated", err, fosite.ErrInvalidatedAuthorizeCode)
	oauthCheckRequest(t, got, req)

	oauthWantErr(t, "invalidate unknown", s.InvalidateAuthorizeCodeSession(oauthCtx(), "other-sig"), fosite.ErrNotFound)
	// A code is spent once: of two exchanges that both read it active,
	// only the first to invalidate it goes on.
	oauthWantErr(t, "invalidate again", s.InvalidateAuthorizeCodeSession(oauthCtx(), "code-sig"), fosite.ErrInvalidatedAuthorizeCode)
}

func testOAuthUnknownClient(t *testing.T, s OAuthStore) {
	req := oauthRequest(&idp.Client{ID: "no-such-client"})
	if err := s.CreateAuthorizeCodeSession(oauthCtx(), "sig", req); err == nil {
		t.Fatal("created a code for an unknown client")
	}
}

func testOAuthAccessToken(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	req := oauthRequest(c)
	oauthOK(t, "create", s.CreateAccessTokenSession(oauthCtx(), "at-sig", req))
	got, err := s.GetAccessTokenSession(oauthCtx(), "at-sig", openid.NewDefaultSession())
	oauthOK(t, "get", err)
	oauthCheckRequest(t, got, req)

	// A nil session (fosite's revocation handler passes one) still gives
	// the requester.
	got, err = s.GetAccessTokenSession(oauthCtx(), "at-sig", nil)
	oauthOK(t, "get nil session", err)
	if got.GetID() != req.ID {
		t.Errorf("ID = %q", got.GetID())
	}

	oauthOK(t, "delete", s.DeleteAccessTokenSession(oauthCtx(), "at-sig"))
	_, err = s.GetAccessTokenSession(oauthCtx(), "at-sig", openid.NewDefaultSession())
	oauthWantErr(t, "get deleted", err, fosite.ErrNotFound)
	oauthOK(t, "delete again", s.DeleteAccessTokenSession(oauthCtx(), "at-sig"))
}

func testOAuthRefreshToken(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	req := oauthRequest(c)
	oauthOK(t, "create", s.CreateRefreshTokenSession(oauthCtx(), "rt-sig", "at-sig", req))
	got, err := s.GetRefreshTokenSession(oauthCtx(), "rt-sig", openid.NewDefaultSession())
	oauthOK(t, "get", err)
	oauthCheckRequest(t, got, req)

	_, err = s.GetRefreshTokenSession(oauthCtx(), "at-sig", openid.NewDefaultSession())
	oauthWantErr(t, "kinds are separate", err, fosite.ErrNotFound)

	oauthOK(t, "delete", s.DeleteRefreshTokenSession(oauthCtx(), "rt-sig"))
	_, err = s.GetRefreshTokenSession(oauthCtx(), "rt-sig", openid.NewDefaultSession())
	oauthWantErr(t, "get deleted", err, fosite.ErrNotFound)
}

// oauthIssuePair stores an access and refresh token for req, as fosite's token
// endpoint does.
func oauthIssuePair(t *testing.T, s OAuthStore, req *fosite.Request, at, rt string) {
	t.Helper()
	oauthOK(t, "create access "+at, s.CreateAccessTokenSession(oauthCtx(), at, req))
	oauthOK(t, "create refresh "+rt, s.CreateRefreshTokenSession(oauthCtx(), rt, at, req))
}

func oauthActive(t *testing.T, s OAuthStore, c context.Context, rt string) {
	t.Helper()
	got, err := s.GetRefreshTokenSession(c, rt, openid.NewDefaultSession())
	if err != nil {
		t.Fatalf("refresh %s: %v, want active", rt, err)
	}
	if got == nil {
		t.Fatalf("refresh %s: nil requester", rt)
	}
}

func oauthInactive(t *testing.T, s OAuthStore, c context.Context, rt, requestID string) {
	t.Helper()
	got, err := s.GetRefreshTokenSession(c, rt, openid.NewDefaultSession())
	if !errors.Is(err, fosite.ErrInactiveToken) {
		t.Fatalf("refresh %s: err = %v, want ErrInactiveToken", rt, err)
	}
	if got == nil {
		t.Fatalf("refresh %s: nil requester with ErrInactiveToken (fosite would panic)", rt)
	}
	if got.GetID() != requestID {
		t.Fatalf("refresh %s: request %q, want %q", rt, got.GetID(), requestID)
	}
	if got.GetSession() == nil || got.GetSession().GetSubject() == "" {
		t.Fatalf("refresh %s: session not decoded", rt)
	}
}

func testOAuthRefreshRotationReuse(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	req := oauthRequest(c)
	oauthIssuePair(t, s, req, "at1", "rt1")

	oauthOK(t, "rotate", s.RotateRefreshToken(oauthCtx(), req.ID, "rt1"))
	oauthIssuePair(t, s, req, "at2", "rt2")

	oauthInactive(t, s, oauthCtx(), "rt1", req.ID)
	_, err := s.GetAccessTokenSession(oauthCtx(), "at1", openid.NewDefaultSession())
	oauthWantErr(t, "access token of rotated refresh", err, fosite.ErrNotFound)
	oauthActive(t, s, oauthCtx(), "rt2")
	if _, err := s.GetAccessTokenSession(oauthCtx(), "at2", openid.NewDefaultSession()); err != nil {
		t.Fatalf("new access token: %v", err)
	}

	// fosite's reaction to reuse: revoke the whole grant.
	oauthOK(t, "delete", s.DeleteRefreshTokenSession(oauthCtx(), "rt1"))
	oauthOK(t, "revoke refresh", s.RevokeRefreshToken(oauthCtx(), req.ID))
	oauthOK(t, "revoke access", s.RevokeAccessToken(oauthCtx(), req.ID))
	oauthInactive(t, s, oauthCtx(), "rt2", req.ID)
	_, err = s.GetAccessTokenSession(oauthCtx(), "at2", openid.NewDefaultSession())
	oauthWantErr(t, "access token after grant revocation", err, fosite.ErrNotFound)
}

func testOAuthRefreshRotationRace(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	req := oauthRequest(c)
	oauthIssuePair(t, s, req, "at1", "rt1")
	oauthOK(t, "rotate", s.RotateRefreshToken(oauthCtx(), req.ID, "rt1"))
	oauthWantErr(t, "second rotate without grace", s.RotateRefreshToken(oauthCtx(), req.ID, "rt1"), fosite.ErrInactiveToken)
	oauthWantErr(t, "rotate unknown", s.RotateRefreshToken(oauthCtx(), req.ID, "nope"), fosite.ErrNotFound)
}

// testRefreshGrace follows fosite's refresh handler: Get, then Rotate, then
// a new pair. Within the grace period the rotated token works once more.
func testOAuthRefreshGrace(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	req := oauthRequest(c)
	gctx := idp.WithRefreshGrace(oauthCtx(), time.Hour)
	oauthIssuePair(t, s, req, "at1", "rt1")

	oauthActive(t, s, gctx, "rt1")
	oauthOK(t, "rotate", s.RotateRefreshToken(gctx, req.ID, "rt1"))
	oauthIssuePair(t, s, req, "at2", "rt2")

	// Without the grace in the context, the token is inactive.
	oauthInactive(t, s, oauthCtx(), "rt1", req.ID)

	// The grace use: returned as active, and reading does not spend it.
	oauthActive(t, s, gctx, "rt1")
	oauthActive(t, s, gctx, "rt1")
	oauthOK(t, "rotate in grace", s.RotateRefreshToken(gctx, req.ID, "rt1"))
	oauthIssuePair(t, s, req, "at3", "rt3")

	// Spent: any further use is reuse.
	oauthInactive(t, s, gctx, "rt1", req.ID)
	oauthWantErr(t, "rotate after grace use", s.RotateRefreshToken(gctx, req.ID, "rt1"), fosite.ErrInactiveToken)

	// The grant survived: both fresh pairs are valid.
	oauthActive(t, s, oauthCtx(), "rt2")
	oauthActive(t, s, oauthCtx(), "rt3")
	for _, at := range []string{"at2", "at3"} {
		if _, err := s.GetAccessTokenSession(oauthCtx(), at, openid.NewDefaultSession()); err != nil {
			t.Fatalf("%s: %v", at, err)
		}
	}
}

func testOAuthRefreshGraceExpired(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	req := oauthRequest(c)
	gctx := idp.WithRefreshGrace(oauthCtx(), 20*time.Millisecond)
	oauthIssuePair(t, s, req, "at1", "rt1")
	oauthOK(t, "rotate", s.RotateRefreshToken(gctx, req.ID, "rt1"))
	time.Sleep(50 * time.Millisecond)
	oauthInactive(t, s, gctx, "rt1", req.ID)
	oauthWantErr(t, "rotate after grace", s.RotateRefreshToken(gctx, req.ID, "rt1"), fosite.ErrInactiveToken)
}

func testOAuthRefreshGraceOtherRequest(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	req := oauthRequest(c)
	gctx := idp.WithRefreshGrace(oauthCtx(), time.Hour)
	oauthIssuePair(t, s, req, "at1", "rt1")
	oauthOK(t, "rotate", s.RotateRefreshToken(gctx, req.ID, "rt1"))
	if err := s.RotateRefreshToken(gctx, "another-request", "rt1"); err == nil {
		t.Fatal("another request spent the grace")
	}
	// The real grace use is still there.
	oauthOK(t, "rotate in grace", s.RotateRefreshToken(gctx, req.ID, "rt1"))
}

func testOAuthRefreshGraceRevoked(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	req := oauthRequest(c)
	gctx := idp.WithRefreshGrace(oauthCtx(), time.Hour)
	oauthIssuePair(t, s, req, "at1", "rt1")
	oauthOK(t, "rotate", s.RotateRefreshToken(gctx, req.ID, "rt1"))
	oauthIssuePair(t, s, req, "at2", "rt2")
	oauthOK(t, "revoke", s.RevokeRefreshToken(gctx, req.ID))
	oauthInactive(t, s, gctx, "rt1", req.ID)
	oauthInactive(t, s, gctx, "rt2", req.ID)
	oauthWantErr(t, "rotate revoked", s.RotateRefreshToken(gctx, req.ID, "rt2"), fosite.ErrInactiveToken)
}

func testOAuthRevokeByRequest(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	a := oauthRequest(c)
	b := oauthRequest(c)
	oauthIssuePair(t, s, a, "a-at1", "a-rt1")
	oauthIssuePair(t, s, a, "a-at2", "a-rt2")
	oauthIssuePair(t, s, b, "b-at", "b-rt")

	oauthOK(t, "revoke access", s.RevokeAccessToken(oauthCtx(), a.ID))
	for _, at := range []string{"a-at1", "a-at2"} {
		_, err := s.GetAccessTokenSession(oauthCtx(), at, openid.NewDefaultSession())
		oauthWantErr(t, at, err, fosite.ErrNotFound)
	}
	oauthActive(t, s, oauthCtx(), "a-rt1")

	oauthOK(t, "revoke refresh", s.RevokeRefreshToken(oauthCtx(), a.ID))
	oauthInactive(t, s, oauthCtx(), "a-rt1", a.ID)
	oauthInactive(t, s, oauthCtx(), "a-rt2", a.ID)

	oauthActive(t, s, oauthCtx(), "b-rt")
	if _, err := s.GetAccessTokenSession(oauthCtx(), "b-at", openid.NewDefaultSession()); err != nil {
		t.Fatalf("other grant's access token: %v", err)
	}
	oauthOK(t, "revoke unknown", s.RevokeRefreshToken(oauthCtx(), "no-such-request"))
	oauthOK(t, "revoke unknown", s.RevokeAccessToken(oauthCtx(), "no-such-request"))
}

// oauthSIDSession carries its sid through a method, as idp's session type may.
type oauthSIDSession struct {
	*openid.DefaultSession
	SID string `json:"nhsid_sid"`
}

func (s *oauthSIDSession) SessionID() string { return s.SID }

func (s *oauthSIDSession) Clone() fosite.Session {
	c := *s
	c.DefaultSession = s.DefaultSession.Clone().(*openid.DefaultSession)
	return &c
}

func testOAuthRevokeBySession(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	a := oauthRequest(c, oauthWithSID("sid-A"))
	b := oauthRequest(c, oauthWithSID("sid-B"))
	oauthIssuePair(t, s, a, "a-at", "a-rt")
	oauthIssuePair(t, s, b, "b-at", "b-rt")

	// A session type with a SessionID method.
	m := oauthRequest(c)
	m.Session = &oauthSIDSession{DefaultSession: m.Session.(*openid.DefaultSession), SID: "sid-A"}
	m.Session.(*oauthSIDSession).Claims.Extra = map[string]any{}
	oauthIssuePair(t, s, m, "m-at", "m-rt")

	n, err := s.RevokeBySession(oauthCtx(), "sid-A")
	oauthOK(t, "revoke by session", err)
	if n != 4 {
		t.Errorf("revoked %d tokens, want 4", n)
	}
	for _, at := range []string{"a-at", "m-at"} {
		_, err := s.GetAccessTokenSession(oauthCtx(), at, openid.NewDefaultSession())
		oauthWantErr(t, at, err, fosite.ErrNotFound)
	}
	oauthInactive(t, s, oauthCtx(), "a-rt", a.ID)
	got, err := s.GetRefreshTokenSession(oauthCtx(), "m-rt", &oauthSIDSession{DefaultSession: openid.NewDefaultSession()})
	oauthWantErr(t, "m-rt", err, fosite.ErrInactiveToken)
	if got.GetSession().(*oauthSIDSession).SID != "sid-A" {
		t.Errorf("custom session not decoded: %+v", got.GetSession())
	}
	// The grace period does not bring back a token revoked by logout.
	oauthWantErr(t, "rotate after logout", s.RotateRefreshToken(idp.WithRefreshGrace(oauthCtx(), time.Hour), a.ID, "a-rt"), fosite.ErrInactiveToken)

	oauthActive(t, s, oauthCtx(), "b-rt")
	if _, err := s.GetAccessTokenSession(oauthCtx(), "b-at", openid.NewDefaultSession()); err != nil {
		t.Fatalf("other session's access token: %v", err)
	}
	n, err = s.RevokeBySession(oauthCtx(), "sid-A")
	oauthOK(t, "revoke again", err)
	if n != 0 {
		t.Errorf("second revoke counted %d", n)
	}
	n, err = s.RevokeBySession(oauthCtx(), "")
	oauthOK(t, "revoke empty sid", err)
	if n != 0 {
		t.Errorf("empty sid revoked %d", n)
	}
}

func testOAuthPKCE(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	req := oauthRequest(c)
	req.Form.Set("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
	req.Form.Set("code_challenge_method", "S256")
	oauthOK(t, "create", s.CreatePKCERequestSession(oauthCtx(), "code-sig", req))
	// Same key, different kind: no clash with the code itself.
	oauthOK(t, "create code", s.CreateAuthorizeCodeSession(oauthCtx(), "code-sig", req))

	got, err := s.GetPKCERequestSession(oauthCtx(), "code-sig", openid.NewDefaultSession())
	oauthOK(t, "get", err)
	oauthCheckRequest(t, got, req)
	if got.GetRequestForm().Get("code_challenge") != req.Form.Get("code_challenge") ||
		got.GetRequestForm().Get("code_challenge_method") != "S256" {
		t.Errorf("form = %v", got.GetRequestForm())
	}
	oauthOK(t, "delete", s.DeletePKCERequestSession(oauthCtx(), "code-sig"))
	_, err = s.GetPKCERequestSession(oauthCtx(), "code-sig", openid.NewDefaultSession())
	oauthWantErr(t, "get deleted", err, fosite.ErrNotFound)
	if _, err := s.GetAuthorizeCodeSession(oauthCtx(), "code-sig", openid.NewDefaultSession()); err != nil {
		t.Fatalf("code after PKCE delete: %v", err)
	}
}

func testOAuthOpenIDConnect(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	req := oauthRequest(c)
	req.Form.Set("max_age", "300")
	oauthOK(t, "create", s.CreateOpenIDConnectSession(oauthCtx(), "the-code", req))

	tokenReq := fosite.NewAccessRequest(openid.NewDefaultSession())
	got, err := s.GetOpenIDConnectSession(oauthCtx(), "the-code", tokenReq)
	oauthOK(t, "get", err)
	oauthCheckRequest(t, got, req)
	if got.GetRequestForm().Get("nonce") != "n-0S6_WzA2Mj" || got.GetRequestForm().Get("max_age") != "300" {
		t.Errorf("form = %v", got.GetRequestForm())
	}
	if tokenReq.GetSession().GetSubject() != "555000000001" {
		t.Errorf("session not decoded into the requester's session")
	}
	oauthOK(t, "delete", s.DeleteOpenIDConnectSession(oauthCtx(), "the-code"))
	_, err = s.GetOpenIDConnectSession(oauthCtx(), "the-code", fosite.NewAccessRequest(openid.NewDefaultSession()))
	oauthWantErr(t, "get deleted", err, openid.ErrNoSessionFound)
}

// testOAuthCodeReadAhead: in a context with the read-ahead of a code's
// rows (store.WithCodeReadAhead), as a token request has, every look-up of
// the code, PKCE and OIDC rows answers what it would without, and a write
// in the context shows in its later look-ups. It holds with and without
// the code's signature, with a client assertion's jti recorded in the
// context first (as private_key_jwt does, before fosite reads the code),
// and with a signature that is not the code's.
func testOAuthCodeReadAhead(t *testing.T, s OAuthStore) {
	for i, v := range []struct {
		name, sig string
		jti       bool
	}{
		{"without signature", "", false},
		{"without signature, jti first", "", true},
		{"with signature", "ra", false},
		{"with signature, jti first", "ra", true},
		{"with another code's signature, jti first", "plain", true},
	} {
		t.Run(v.name, func(t *testing.T) { oauthCodeReadAhead(t, s, fmt.Sprintf("v%d-", i), v.sig, v.jti) })
	}
}

// oauthCodeReadAhead is testOAuthCodeReadAhead with the read-ahead given
// the signature of code sig ("ra", "plain", or "" for none), recording a
// jti first if jti. Its codes and jti start with p.
func oauthCodeReadAhead(t *testing.T, s OAuthStore, p, sig string, jti bool) {
	raSig, raCode := p+"ra-sig", p+"ra-code."+p+"ra-sig"
	plainSig, plainCode := p+"plain-sig", p+"plain-code."+p+"plain-sig"
	sigs := map[string]string{"ra": raSig, "plain": plainSig}
	c := oauthClient(t, s)
	req := oauthRequest(c)
	req.Form.Set("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
	oauthOK(t, "create code", s.CreateAuthorizeCodeSession(oauthCtx(), raSig, req))
	oauthOK(t, "create pkce", s.CreatePKCERequestSession(oauthCtx(), raSig, req))
	oauthOK(t, "create oidc", s.CreateOpenIDConnectSession(oauthCtx(), raCode, req))
	plain := oauthRequest(c)
	oauthOK(t, "create code without PKCE or OIDC", s.CreateAuthorizeCodeSession(oauthCtx(), plainSig, plain))

	ctx := store.WithCodeReadAhead(oauthCtx(), s, raCode, sigs[sig])
	if jti {
		exp := time.Now().Add(time.Hour)
		oauthOK(t, "record jti", s.SetClientAssertionJWT(ctx, p+"jti", exp))
		oauthWantErr(t, "record jti again", s.SetClientAssertionJWT(ctx, p+"jti", exp), fosite.ErrJTIKnown)
		replay := store.WithCodeReadAhead(oauthCtx(), s, raCode, sigs[sig])
		oauthWantErr(t, "replay jti", s.SetClientAssertionJWT(replay, p+"jti", exp), fosite.ErrJTIKnown)
		oauthWantErr(t, "jti known", s.ClientAssertionJWTValid(oauthCtx(), p+"jti"), fosite.ErrJTIKnown)
	}
	for i := range 2 { // fosite reads the code twice
		got, err := s.GetAuthorizeCodeSession(ctx, raSig, openid.NewDefaultSession())
		oauthOK(t, fmt.Sprint("get code ", i), err)
		oauthCheckRequest(t, got, req)
	}
	got, err := s.GetPKCERequestSession(ctx, raSig, openid.NewDefaultSession())
	oauthOK(t, "get pkce", err)
	mustForm(t, got, "code_challenge", req.Form.Get("code_challenge"))
	tokenReq := fosite.NewAccessRequest(openid.NewDefaultSession())
	got, err = s.GetOpenIDConnectSession(ctx, raCode, tokenReq)
	oauthOK(t, "get oidc", err)
	oauthCheckRequest(t, got, req)
	if tokenReq.GetSession().GetSubject() != "555000000001" {
		t.Errorf("oidc session not decoded into the requester's session")
	}

	oauthOK(t, "delete pkce", s.DeletePKCERequestSession(ctx, raSig))
	_, err = s.GetPKCERequestSession(ctx, raSig, openid.NewDefaultSession())
	oauthWantErr(t, "get deleted pkce", err, fosite.ErrNotFound)
	oauthOK(t, "invalidate", s.InvalidateAuthorizeCodeSession(ctx, raSig))
	_, err = s.GetAuthorizeCodeSession(ctx, raSig, openid.NewDefaultSession())
	oauthWantErr(t, "get invalidated code", err, fosite.ErrInvalidatedAuthorizeCode)
	oauthWantErr(t, "invalidate again", s.InvalidateAuthorizeCodeSession(ctx, raSig), fosite.ErrInvalidatedAuthorizeCode)
	// fosite reads the OIDC row after the code is spent, to sign the ID token.
	tokenReq = fosite.NewAccessRequest(openid.NewDefaultSession())
	got, err = s.GetOpenIDConnectSession(ctx, raCode, tokenReq)
	oauthOK(t, "get oidc after the spend", err)
	oauthCheckRequest(t, got, req)
	if tokenReq.GetSession().GetSubject() != "555000000001" {
		t.Errorf("oidc session after the spend not decoded into the requester's session")
	}
	oauthOK(t, "delete oidc", s.DeleteOpenIDConnectSession(ctx, raCode))
	_, err = s.GetOpenIDConnectSession(ctx, raCode, fosite.NewAccessRequest(openid.NewDefaultSession()))
	oauthWantErr(t, "get deleted oidc", err, fosite.ErrNotFound)
	// The deletes and the spend are in the store, not only in the context.
	_, err = s.GetPKCERequestSession(oauthCtx(), raSig, openid.NewDefaultSession())
	oauthWantErr(t, "get deleted pkce afresh", err, fosite.ErrNotFound)
	_, err = s.GetOpenIDConnectSession(oauthCtx(), raCode, fosite.NewAccessRequest(openid.NewDefaultSession()))
	oauthWantErr(t, "get deleted oidc afresh", err, fosite.ErrNotFound)
	_, err = s.GetAuthorizeCodeSession(oauthCtx(), raSig, openid.NewDefaultSession())
	oauthWantErr(t, "get invalidated code afresh", err, fosite.ErrInvalidatedAuthorizeCode)

	// A code without PKCE or OIDC rows, and a code the read-ahead was not for.
	ctx = store.WithCodeReadAhead(oauthCtx(), s, plainCode, sigs[sig])
	_, err = s.GetPKCERequestSession(ctx, plainSig, openid.NewDefaultSession())
	oauthWantErr(t, "get absent pkce", err, fosite.ErrNotFound)
	got, err = s.GetAuthorizeCodeSession(ctx, plainSig, openid.NewDefaultSession())
	oauthOK(t, "get plain code", err)
	oauthCheckRequest(t, got, plain)
	_, err = s.GetOpenIDConnectSession(ctx, plainCode, fosite.NewAccessRequest(openid.NewDefaultSession()))
	oauthWantErr(t, "get absent oidc", err, fosite.ErrNotFound)
	_, err = s.GetAuthorizeCodeSession(ctx, raSig, openid.NewDefaultSession())
	oauthWantErr(t, "get other code", err, fosite.ErrInvalidatedAuthorizeCode)
}

func mustForm(t *testing.T, r fosite.Requester, key, want string) {
	t.Helper()
	if got := r.GetRequestForm().Get(key); got != want {
		t.Errorf("form %s = %q, want %q", key, got, want)
	}
}

func testOAuthFormSanitised(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	req := oauthRequest(c)
	req.Form.Set("client_secret", "s3cret")
	req.Form.Set("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
	req.Form.Set("code", "the-code")
	req.Form.Set("refresh_token", "rt")
	req.Form.Set("client_assertion", "eyJ...")
	oauthOK(t, "create", s.CreateAccessTokenSession(oauthCtx(), "at", req))
	got, err := s.GetAccessTokenSession(oauthCtx(), "at", openid.NewDefaultSession())
	oauthOK(t, "get", err)
	for _, k := range []string{"client_secret", "code_verifier", "code", "refresh_token", "client_assertion"} {
		if got.GetRequestForm().Has(k) {
			t.Errorf("form kept %s", k)
		}
	}
	if got.GetRequestForm().Get("client_id") != c.ID {
		t.Errorf("form lost client_id: %v", got.GetRequestForm())
	}
}

func testOAuthJTI(t *testing.T, s OAuthStore) {
	now := time.Now()
	oauthOK(t, "valid unknown", s.ClientAssertionJWTValid(oauthCtx(), "jti-1"))
	oauthOK(t, "set", s.SetClientAssertionJWT(oauthCtx(), "jti-1", now.Add(time.Hour)))
	oauthWantErr(t, "valid known", s.ClientAssertionJWTValid(oauthCtx(), "jti-1"), fosite.ErrJTIKnown)
	oauthWantErr(t, "set known", s.SetClientAssertionJWT(oauthCtx(), "jti-1", now.Add(time.Hour)), fosite.ErrJTIKnown)

	// An expired jti may be reused (the assertion itself has expired).
	oauthOK(t, "set expired", s.SetClientAssertionJWT(oauthCtx(), "jti-2", now.Add(-time.Second)))
	oauthOK(t, "valid expired", s.ClientAssertionJWTValid(oauthCtx(), "jti-2"))
	oauthOK(t, "set again", s.SetClientAssertionJWT(oauthCtx(), "jti-2", now.Add(time.Hour)))
	oauthWantErr(t, "valid again", s.ClientAssertionJWTValid(oauthCtx(), "jti-2"), fosite.ErrJTIKnown)
}

func testOAuthConcurrentJTI(t *testing.T, s OAuthStore) {
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.SetClientAssertionJWT(oauthCtx(), "jti-race", time.Now().Add(time.Hour))
		}()
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, fosite.ErrJTIKnown):
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent SetClientAssertionJWT succeeded, want 1", ok, n)
	}
}

func testOAuthPAR(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	ar := fosite.NewAuthorizeRequest()
	ar.ID = oauthID("req-")
	ar.RequestedAt = time.Now().UTC()
	ar.Client = c
	ar.RequestedScope = fosite.Arguments{"openid", "profile"}
	ar.RequestedAudience = fosite.Arguments{"https://api.example"}
	ar.ResponseTypes = fosite.Arguments{"code"}
	ar.State = "xyz-state"
	ar.ResponseMode = fosite.ResponseModeQuery
	ar.RedirectURI, _ = url.Parse("https://rp.example/cb?x=1")
	ar.Form = url.Values{
		"client_id":             {c.ID},
		"client_secret":         {"s3cret"},
		"response_type":         {"code"},
		"scope":                 {"openid profile"},
		"redirect_uri":          {"https://rp.example/cb?x=1"},
		"state":                 {"xyz-state"},
		"nonce":                 {"n-1"},
		"code_challenge":        {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
		"code_challenge_method": {"S256"},
		"acr_values":            {"AAL3_ANY"},
	}
	sess := openid.NewDefaultSession()
	sess.SetExpiresAt(fosite.PushedAuthorizeRequestContext, time.Now().Add(time.Minute))
	ar.Session = sess

	const uri = "urn:ietf:params:oauth:request_uri:abc123"
	oauthOK(t, "create", s.CreatePARSession(oauthCtx(), uri, ar))
	got, err := s.GetPARSession(oauthCtx(), uri)
	oauthOK(t, "get", err)
	if got.GetID() != ar.ID || got.GetClient().GetID() != c.ID {
		t.Errorf("id/client = %q/%q", got.GetID(), got.GetClient().GetID())
	}
	if d := got.GetRequestedAt().Sub(ar.RequestedAt); d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("RequestedAt = %v, want %v", got.GetRequestedAt(), ar.RequestedAt)
	}
	oauthSameArgs(t, "scopes", got.GetRequestedScopes(), ar.RequestedScope)
	oauthSameArgs(t, "audience", got.GetRequestedAudience(), ar.RequestedAudience)
	oauthSameArgs(t, "response types", got.GetResponseTypes(), ar.ResponseTypes)
	if got.GetState() != "xyz-state" || got.GetResponseMode() != fosite.ResponseModeQuery {
		t.Errorf("state/mode = %q/%q", got.GetState(), got.GetResponseMode())
	}
	if got.GetRedirectURI() == nil || got.GetRedirectURI().String() != "https://rp.example/cb?x=1" {
		t.Errorf("redirect uri = %v", got.GetRedirectURI())
	}
	f := got.GetRequestForm()
	for _, k := range []string{"nonce", "code_challenge", "code_challenge_method", "acr_values", "redirect_uri", "client_id"} {
		if f.Get(k) != ar.Form.Get(k) {
			t.Errorf("form %s = %q, want %q", k, f.Get(k), ar.Form.Get(k))
		}
	}
	if f.Has("client_secret") {
		t.Error("PAR kept client_secret")
	}

	// fosite merges it into the authorize request it is parsing.
	merged := fosite.NewAuthorizeRequest()
	merged.Form = url.Values{"client_id": {c.ID}, "request_uri": {uri}}
	merged.Merge(got)
	if merged.GetClient().GetID() != c.ID || merged.GetRequestForm().Get("nonce") != "n-1" {
		t.Errorf("merge lost data: %+v", merged)
	}

	oauthOK(t, "delete", s.DeletePARSession(oauthCtx(), uri))
	_, err = s.GetPARSession(oauthCtx(), uri)
	oauthWantErr(t, "get deleted", err, fosite.ErrNotFound)

	sess.SetExpiresAt(fosite.PushedAuthorizeRequestContext, time.Now().Add(-time.Second))
	oauthOK(t, "create expired", s.CreatePARSession(oauthCtx(), uri+"x", ar))
	_, err = s.GetPARSession(oauthCtx(), uri+"x")
	oauthWantErr(t, "get expired", err, fosite.ErrNotFound)
}

func testOAuthExpiry(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	past := time.Now().Add(-time.Second)
	tests := []struct {
		name   string
		create func(r *fosite.Request) error
		get    func() error
	}{
		{
			name:   "authorize code",
			create: func(r *fosite.Request) error { return s.CreateAuthorizeCodeSession(oauthCtx(), "exp", r) },
			get: func() error {
				_, err := s.GetAuthorizeCodeSession(oauthCtx(), "exp", openid.NewDefaultSession())
				return err
			},
		},
		{
			name:   "access token",
			create: func(r *fosite.Request) error { return s.CreateAccessTokenSession(oauthCtx(), "exp", r) },
			get: func() error {
				_, err := s.GetAccessTokenSession(oauthCtx(), "exp", openid.NewDefaultSession())
				return err
			},
		},
		{
			name:   "refresh token",
			create: func(r *fosite.Request) error { return s.CreateRefreshTokenSession(oauthCtx(), "exp", "", r) },
			get: func() error {
				_, err := s.GetRefreshTokenSession(oauthCtx(), "exp", openid.NewDefaultSession())
				return err
			},
		},
		{
			name:   "pkce",
			create: func(r *fosite.Request) error { return s.CreatePKCERequestSession(oauthCtx(), "exp", r) },
			get: func() error {
				_, err := s.GetPKCERequestSession(oauthCtx(), "exp", openid.NewDefaultSession())
				return err
			},
		},
		{
			name:   "oidc",
			create: func(r *fosite.Request) error { return s.CreateOpenIDConnectSession(oauthCtx(), "exp", r) },
			get: func() error {
				_, err := s.GetOpenIDConnectSession(oauthCtx(), "exp", fosite.NewAccessRequest(openid.NewDefaultSession()))
				return err
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := oauthRequest(c,
				oauthWithExpiry(fosite.AuthorizeCode, past),
				oauthWithExpiry(fosite.AccessToken, past),
				oauthWithExpiry(fosite.RefreshToken, past))
			oauthOK(t, "create", tc.create(r))
			oauthWantErr(t, "get expired", tc.get(), fosite.ErrNotFound)
		})
	}

	t.Run("no expiry", func(t *testing.T) {
		r := oauthRequest(c)
		r.Session.(*openid.DefaultSession).ExpiresAt = map[fosite.TokenType]time.Time{}
		oauthOK(t, "create", s.CreateRefreshTokenSession(oauthCtx(), "forever", "", r))
		oauthActive(t, s, oauthCtx(), "forever")
	})

	t.Run("reuse of an expired rotated token is still reuse", func(t *testing.T) {
		r := oauthRequest(c, oauthWithRequestID(oauthID("req-")))
		oauthOK(t, "create", s.CreateRefreshTokenSession(oauthCtx(), "exp-rotated", "", r))
		oauthOK(t, "rotate", s.RotateRefreshToken(oauthCtx(), r.ID, "exp-rotated"))
		r2 := oauthRequest(c, oauthWithRequestID(r.ID), oauthWithExpiry(fosite.RefreshToken, past))
		oauthOK(t, "create expired", s.CreateRefreshTokenSession(oauthCtx(), "exp-rotated-2", "", r2))
		oauthOK(t, "rotate expired", s.RotateRefreshToken(oauthCtx(), r.ID, "exp-rotated-2"))
		oauthInactive(t, s, oauthCtx(), "exp-rotated-2", r.ID)
	})
}

// testOAuthConcurrentRotation: of several simultaneous rotations of one
// token, exactly one wins without a grace period, and exactly two (the
// rotation and its one grace use) with one.
func testOAuthConcurrentRotation(t *testing.T, s OAuthStore) {
	c := oauthClient(t, s)
	tests := []struct {
		name  string
		grace time.Duration
		want  int
	}{
		{"no grace", 0, 1},
		{"grace", time.Hour, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := oauthRequest(c)
			oauthIssuePair(t, s, req, "at-"+req.ID, "rt-"+req.ID)
			gctx := idp.WithRefreshGrace(oauthCtx(), tc.grace)
			const n = 8
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- s.RotateRefreshToken(gctx, req.ID, "rt-"+req.ID)
				}()
			}
			wg.Wait()
			close(errs)
			ok := 0
			for err := range errs {
				switch {
				case err == nil:
					ok++
				case errors.Is(err, fosite.ErrInactiveToken), errors.Is(err, fosite.ErrSerializationFailure):
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}
			if ok != tc.want {
				t.Errorf("%d rotations succeeded, want %d", ok, tc.want)
			}
		})
	}
}

// oauthProvider is a fosite provider with the refresh grant on s.
type oauthProvider struct {
	f        fosite.OAuth2Provider
	strategy interface {
		GenerateRefreshToken(ctx context.Context, req fosite.Requester) (string, string, error)
	}
	client *idp.Client
}

func newOAuthProvider(t *testing.T, s OAuthStore) *oauthProvider {
	cfg := &fosite.Config{
		GlobalSecret:         []byte("0123456789abcdef0123456789abcdef"),
		AccessTokenLifespan:  time.Hour,
		RefreshTokenLifespan: 24 * time.Hour,
		RefreshTokenScopes:   []string{},
		TokenURL:             "https://nhsid.example/oauth2/token",
	}
	strategy := compose.NewOAuth2HMACStrategy(cfg)
	f := compose.Compose(cfg, s, strategy,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory)
	return &oauthProvider{f: f, strategy: strategy, client: oauthClient(t, s)}
}

// grant stores a refresh token as the code exchange would, and returns it.
func (p *oauthProvider) grant(t *testing.T, s OAuthStore) (token, requestID string) {
	t.Helper()
	req := oauthRequest(p.client)
	token, sig, err := p.strategy.GenerateRefreshToken(oauthCtx(), req)
	oauthOK(t, "generate refresh token", err)
	oauthOK(t, "store refresh token", s.CreateRefreshTokenSession(oauthCtx(), sig, "", req))
	return token, req.ID
}

// refresh runs fosite's token endpoint for a refresh_token grant and
// returns the new refresh token, or the error.
func (p *oauthProvider) refresh(ctx context.Context, rt string) (string, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {p.client.ID}}
	r := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	ar, err := p.f.NewAccessRequest(ctx, r, openid.NewDefaultSession())
	if err != nil {
		return "", err
	}
	resp, err := p.f.NewAccessResponse(ctx, ar)
	if err != nil {
		return "", err
	}
	next, _ := resp.GetExtra("refresh_token").(string)
	if next == "" || resp.GetAccessToken() == "" {
		return "", errors.New("no token pair in response")
	}
	return next, nil
}

func (p *oauthProvider) mustRefresh(t *testing.T, ctx context.Context, rt string) string {
	t.Helper()
	next, err := p.refresh(ctx, rt)
	if err != nil {
		t.Fatalf("refresh: %v", fosite.ErrorToRFC6749Error(err).WithExposeDebug(true).GetDescription())
	}
	return next
}

func (p *oauthProvider) mustFail(t *testing.T, ctx context.Context, rt, what string) {
	t.Helper()
	if _, err := p.refresh(ctx, rt); err == nil {
		t.Fatalf("%s: refresh succeeded", what)
	} else if !errors.Is(err, fosite.ErrInvalidGrant) {
		t.Fatalf("%s: err = %v, want invalid_grant", what, err)
	}
}

// testOAuthFositeRefreshReuse drives fosite's refresh handler: reuse of a
// rotated token fails and revokes the whole grant.
func testOAuthFositeRefreshReuse(t *testing.T, s OAuthStore) {
	p := newOAuthProvider(t, s)
	rt1, _ := p.grant(t, s)
	rt2 := p.mustRefresh(t, oauthCtx(), rt1)
	p.mustFail(t, oauthCtx(), rt1, "reuse")
	p.mustFail(t, oauthCtx(), rt2, "token of a revoked grant")

	// Another grant is untouched.
	other, _ := p.grant(t, s)
	p.mustRefresh(t, oauthCtx(), other)
}

// testOAuthFositeRefreshGrace: within the grace period a rotated token gives
// exactly one more pair and the grant lives on; a third use is reuse.
func testOAuthFositeRefreshGrace(t *testing.T, s OAuthStore) {
	p := newOAuthProvider(t, s)
	gctx := idp.WithRefreshGrace(oauthCtx(), time.Minute)

	t.Run("one grace use", func(t *testing.T) {
		rt1, _ := p.grant(t, s)
		rt2 := p.mustRefresh(t, gctx, rt1)
		rt3 := p.mustRefresh(t, gctx, rt1) // e.g. the response with rt2 was lost
		if rt3 == rt2 {
			t.Fatal("grace use returned the same token")
		}
		// Both pairs are valid and each rotates normally.
		rt4 := p.mustRefresh(t, gctx, rt2)
		p.mustRefresh(t, gctx, rt3)
		p.mustRefresh(t, gctx, rt4)
	})

	t.Run("third use revokes the grant", func(t *testing.T) {
		rt1, _ := p.grant(t, s)
		rt2 := p.mustRefresh(t, gctx, rt1)
		rt3 := p.mustRefresh(t, gctx, rt1)
		p.mustFail(t, gctx, rt1, "third use")
		p.mustFail(t, gctx, rt2, "rt2 after reuse")
		p.mustFail(t, gctx, rt3, "rt3 after reuse")
	})

	t.Run("no grace configured", func(t *testing.T) {
		rt1, _ := p.grant(t, s)
		rt2 := p.mustRefresh(t, oauthCtx(), rt1)
		p.mustFail(t, oauthCtx(), rt1, "second use")
		p.mustFail(t, oauthCtx(), rt2, "rt2 after reuse")
	})
}

// OAuthPurger is implemented by stores that can drop expired OAuth rows (for
// the GC job).
type OAuthPurger interface {
	PurgeExpiredOAuth(ctx context.Context, before time.Time) (int, error)
}

func testOAuthPurgeExpired(t *testing.T, s OAuthStore) {
	p, ok := s.(OAuthPurger)
	if !ok {
		t.Fatalf("%T does not implement PurgeExpiredOAuth", s)
	}
	c := oauthClient(t, s)
	past := time.Now().Add(-time.Minute)
	old := oauthRequest(c, oauthWithExpiry(fosite.AccessToken, past), oauthWithExpiry(fosite.RefreshToken, past))
	live := oauthRequest(c)
	oauthIssuePair(t, s, old, "old-at", "old-rt")
	oauthIssuePair(t, s, live, "live-at", "live-rt")
	oauthOK(t, "jti", s.SetClientAssertionJWT(oauthCtx(), "old-jti", past))

	n, err := p.PurgeExpiredOAuth(oauthCtx(), time.Now())
	oauthOK(t, "purge", err)
	if n != 3 {
		t.Errorf("purged %d rows, want 3", n)
	}
	oauthActive(t, s, oauthCtx(), "live-rt")
	_, err = s.GetRefreshTokenSession(oauthCtx(), "old-rt", openid.NewDefaultSession())
	oauthWantErr(t, "purged refresh", err, fosite.ErrNotFound)
}
