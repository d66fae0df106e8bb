package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/store"

	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/store/postgres"
	"github.com/nhsid/nhsid/store/storetest"
)

func TestOAuth(t *testing.T) {
	storetest.RunOAuthTests(t, func(t *testing.T) storetest.OAuthStore {
		return postgres.New(testdb.Pool(t))
	})
}

// TestCodeReadAhead: in a token request's context the first look-up of a
// code reads its code, PKCE and OIDC rows in one go, and the later
// look-ups are answered from that read (here the rows are gone from the
// table by then); a context without it reads the table.
func TestCodeReadAhead(t *testing.T) {
	pool := testdb.Pool(t)
	s := postgres.New(pool)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	c := &idp.Client{ID: "ra-client", Name: "RP", RedirectURIs: []string{"https://rp.example/cb"},
		GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"}, Scope: "openid",
		TokenEndpointAuthMethod: "none", CreatedAt: now, UpdatedAt: now}
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	req := fosite.NewRequest()
	req.Client = c
	req.Session = openid.NewDefaultSession()
	req.Session.(*openid.DefaultSession).Subject = "555000000001"
	req.Form = url.Values{"code_challenge": {"ch"}, "nonce": {"n"}}
	for _, err := range []error{
		s.CreateAuthorizeCodeSession(ctx, "sig", req),
		s.CreatePKCERequestSession(ctx, "sig", req),
		s.CreateOpenIDConnectSession(ctx, "code.sig", req),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	rctx := store.WithCodeReadAhead(ctx, s, "code.sig")
	if _, err := s.GetAuthorizeCodeSession(rctx, "sig", openid.NewDefaultSession()); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM oauth_tokens`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAuthorizeCodeSession(rctx, "sig", openid.NewDefaultSession()); err != nil {
		t.Fatalf("code again: %v (not read ahead)", err)
	}
	pkce, err := s.GetPKCERequestSession(rctx, "sig", openid.NewDefaultSession())
	if err != nil || pkce.GetRequestForm().Get("code_challenge") != "ch" {
		t.Fatalf("pkce: %v, %v (not read ahead)", pkce, err)
	}
	oidc, err := s.GetOpenIDConnectSession(rctx, "code.sig", fosite.NewAccessRequest(openid.NewDefaultSession()))
	if err != nil || oidc.GetRequestForm().Get("nonce") != "n" {
		t.Fatalf("oidc: %v, %v (not read ahead)", oidc, err)
	}
	if _, err := s.GetAuthorizeCodeSession(ctx, "sig", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Fatalf("code without read-ahead: %v, want not found", err)
	}
}
