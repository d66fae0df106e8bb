package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
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

// codeFixture is a store holding the code, PKCE and OIDC rows of the
// authorization code "code.sig" (signature "sig").
func codeFixture(t *testing.T) (*pgxpool.Pool, *postgres.Store) {
	t.Helper()
	pool := testdb.Pool(t)
	s := postgres.New(pool)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	c := &idp.Client{ID: "code-client", Name: "RP", RedirectURIs: []string{"https://rp.example/cb"},
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
	return pool, s
}

// TestCodeSpendTakesItsRows: in a token request's context the PKCE row's
// delete waits for the code's spend and the OIDC row goes with it, in the
// spend's transaction: a rolled-back spend leaves all three rows as they
// were (the code can still be exchanged), a committed one removes the PKCE
// and OIDC rows, and the loser of two spends removes nothing.
func TestCodeSpendTakesItsRows(t *testing.T) {
	pool, s := codeFixture(t)
	ctx := context.Background()
	rows := func() (active bool, others int) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT bool_or(active) FILTER (WHERE kind = 'authorize_code'),
			count(*) FILTER (WHERE kind <> 'authorize_code') FROM oauth_tokens`).Scan(&active, &others); err != nil {
			t.Fatal(err)
		}
		return active, others
	}
	// begin runs the store calls of one code exchange, as fosite makes
	// them, up to the spend, and opens the spend's transaction.
	begin := func() context.Context {
		t.Helper()
		rctx := store.WithCodeReadAhead(ctx, s, "code.sig", "")
		if _, err := s.GetAuthorizeCodeSession(rctx, "sig", openid.NewDefaultSession()); err != nil {
			t.Fatalf("get code: %v", err)
		}
		if _, err := s.GetPKCERequestSession(rctx, "sig", openid.NewDefaultSession()); err != nil {
			t.Fatalf("get pkce: %v", err)
		}
		if err := s.DeletePKCERequestSession(rctx, "sig"); err != nil {
			t.Fatalf("delete pkce: %v", err)
		}
		txCtx, err := s.BeginTX(rctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Rollback(txCtx) })
		return txCtx
	}

	rb := begin()
	if err := s.InvalidateAuthorizeCodeSession(rb, "sig"); err != nil {
		t.Fatalf("spend: %v", err)
	}
	if err := s.Rollback(rb); err != nil {
		t.Fatal(err)
	}
	if active, others := rows(); !active || others != 2 {
		t.Fatalf("after a rolled-back spend: code active %v, %d PKCE and OIDC rows; want true, 2", active, others)
	}

	a, b := begin(), begin()
	if err := s.InvalidateAuthorizeCodeSession(a, "sig"); err != nil {
		t.Fatalf("spend: %v", err)
	}
	lost := make(chan error, 1)
	go func() { lost <- s.InvalidateAuthorizeCodeSession(b, "sig") }() // waits for a's row lock
	time.Sleep(50 * time.Millisecond)
	if err := s.Commit(a); err != nil {
		t.Fatal(err)
	}
	if err := <-lost; !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		t.Errorf("second spend: %v, want ErrInvalidatedAuthorizeCode", err)
	}
	if err := s.Rollback(b); err != nil {
		t.Fatal(err)
	}
	if active, others := rows(); active || others != 0 {
		t.Fatalf("after the spend: code active %v, %d PKCE and OIDC rows; want false, 0", active, others)
	}
	// fosite reads the OIDC row after the spend, from the request's read.
	if _, err := s.GetOpenIDConnectSession(a, "code.sig", fosite.NewAccessRequest(openid.NewDefaultSession())); err != nil {
		t.Errorf("oidc after the spend: %v", err)
	}
}

// TestCodeReadAhead: in a token request's context the first look-up of a
// code reads its code, PKCE and OIDC rows in one go, and the later
// look-ups are answered from that read (here the rows are gone from the
// table by then); a context without it reads the table.
func TestCodeReadAhead(t *testing.T) {
	pool, s := codeFixture(t)
	ctx := context.Background()
	rctx := store.WithCodeReadAhead(ctx, s, "code.sig", "")
	if _, err := s.GetAuthorizeCodeSession(rctx, "sig", openid.NewDefaultSession()); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM oauth_tokens`); err != nil {
		t.Fatal(err)
	}
	readFromContext(t, s, rctx, "not read ahead")
	if _, err := s.GetAuthorizeCodeSession(ctx, "sig", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Fatalf("code without read-ahead: %v, want not found", err)
	}
}

// TestJTIReadsTheCodeAhead: in a token request's context that knows its
// code's signature, recording the client assertion's jti also reads the
// code's rows (one batch), so fosite's later look-ups need the database no
// more (here the rows are gone from the table by then), and the jti is
// recorded all the same.
func TestJTIReadsTheCodeAhead(t *testing.T) {
	pool, s := codeFixture(t)
	ctx := context.Background()
	rctx := store.WithCodeReadAhead(ctx, s, "code.sig", "sig")
	if err := s.SetClientAssertionJWT(rctx, "jti-1", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM oauth_tokens`); err != nil {
		t.Fatal(err)
	}
	readFromContext(t, s, rctx, "not read with the jti")
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM oauth_jti`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("jti rows: %d, %v; want 1", n, err)
	}
	if err := s.SetClientAssertionJWT(store.WithCodeReadAhead(ctx, s, "code.sig", "sig"), "jti-1",
		time.Now().Add(time.Minute)); !errors.Is(err, fosite.ErrJTIKnown) {
		t.Fatalf("replayed jti: %v, want ErrJTIKnown", err)
	}
}

// readFromContext checks that rctx answers the look-ups of codeFixture's
// code, PKCE and OIDC rows (after they left the table); why says what it
// means when it does not.
func readFromContext(t *testing.T, s *postgres.Store, rctx context.Context, why string) {
	t.Helper()
	if _, err := s.GetAuthorizeCodeSession(rctx, "sig", openid.NewDefaultSession()); err != nil {
		t.Fatalf("code: %v (%s)", err, why)
	}
	pkce, err := s.GetPKCERequestSession(rctx, "sig", openid.NewDefaultSession())
	if err != nil || pkce.GetRequestForm().Get("code_challenge") != "ch" {
		t.Fatalf("pkce: %v, %v (%s)", pkce, err, why)
	}
	oidc, err := s.GetOpenIDConnectSession(rctx, "code.sig", fosite.NewAccessRequest(openid.NewDefaultSession()))
	if err != nil || oidc.GetRequestForm().Get("nonce") != "n" {
		t.Fatalf("oidc: %v, %v (%s)", oidc, err, why)
	}
}
