package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/internal/testdb"
)

func oauthTestStore(t *testing.T) (*Store, *fosite.Request) {
	t.Helper()
	s := New(testdb.Pool(t))
	c := &idp.Client{ID: "tx-client", RedirectURIs: []string{"https://rp.example/cb"}, TokenEndpointAuthMethod: "none"}
	if err := s.CreateClient(context.Background(), c); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	req := fosite.NewRequest()
	req.ID = "tx-request"
	req.Client = c
	req.Session = openid.NewDefaultSession()
	req.Session.SetExpiresAt(fosite.AccessToken, time.Now().Add(time.Hour))
	return s, req
}

func TestOAuthTransactions(t *testing.T) {
	tests := []struct {
		name    string
		finish  func(s *Store, ctx context.Context) error
		visible bool
	}{
		{"commit", (*Store).Commit, true},
		{"rollback", (*Store).Rollback, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, req := oauthTestStore(t)
			bg := context.Background()
			ctx, err := s.BeginTX(bg)
			if err != nil {
				t.Fatalf("BeginTX: %v", err)
			}
			if _, err := s.BeginTX(ctx); err == nil {
				t.Error("nested BeginTX succeeded")
			}
			if err := s.CreateAccessTokenSession(ctx, "at", req); err != nil {
				t.Fatalf("create: %v", err)
			}
			if _, err := s.GetAccessTokenSession(ctx, "at", openid.NewDefaultSession()); err != nil {
				t.Fatalf("get inside tx: %v", err)
			}
			if _, err := s.GetAccessTokenSession(bg, "at", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
				t.Fatalf("get outside tx before commit: %v, want ErrNotFound", err)
			}
			if err := tc.finish(s, ctx); err != nil {
				t.Fatalf("finish: %v", err)
			}
			if err := s.Rollback(ctx); err != nil {
				t.Errorf("rollback after finish: %v", err)
			}
			_, err = s.GetAccessTokenSession(bg, "at", openid.NewDefaultSession())
			if tc.visible && err != nil {
				t.Fatalf("get after commit: %v", err)
			}
			if !tc.visible && !errors.Is(err, fosite.ErrNotFound) {
				t.Fatalf("get after rollback: %v, want ErrNotFound", err)
			}
		})
	}

	t.Run("no transaction", func(t *testing.T) {
		s := &Store{}
		if err := s.Commit(context.Background()); err == nil {
			t.Error("Commit without a transaction succeeded")
		}
		if err := s.Rollback(context.Background()); err == nil {
			t.Error("Rollback without a transaction succeeded")
		}
	})
}

func TestOAuthErrorMapping(t *testing.T) {
	s, _ := oauthTestStore(t)
	tests := []struct {
		code string
		want error
	}{
		{"40001", fosite.ErrSerializationFailure},
		{"40P01", fosite.ErrSerializationFailure},
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			_, err := s.pool.Exec(context.Background(),
				`DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '`+tc.code+`'; END $$`)
			if err == nil {
				t.Fatal("no error raised")
			}
			if got := oauthErr("op", err); !errors.Is(got, tc.want) {
				t.Fatalf("oauthErr = %v, want %v", got, tc.want)
			}
		})
	}
	if got := oauthErr("op", pgx.ErrNoRows); !errors.Is(got, fosite.ErrNotFound) {
		t.Fatalf("no rows: %v", got)
	}
}

// beginRefresh opens a transaction as fosite's refresh does and reads the
// refresh token "rt" in it; serializable raises its isolation first.
func beginRefresh(t *testing.T, s *Store, bg context.Context, serializable bool) context.Context {
	t.Helper()
	ctx, err := s.BeginTX(bg)
	if err != nil {
		t.Fatalf("BeginTX: %v", err)
	}
	if serializable {
		if _, err := ctx.Value(txKey{}).(pgx.Tx).Exec(ctx, `SET TRANSACTION ISOLATION LEVEL SERIALIZABLE`); err != nil {
			t.Fatalf("set isolation: %v", err)
		}
	}
	if _, err := s.GetRefreshTokenSession(ctx, "rt", openid.NewDefaultSession()); err != nil {
		t.Fatalf("get: %v", err)
	}
	return ctx
}

// TestOAuthSerializableRotation: two serializable transactions rotating
// the same refresh token; the loser gets fosite.ErrSerializationFailure,
// which fosite answers with "retry".
func TestOAuthSerializableRotation(t *testing.T) {
	s, req := oauthTestStore(t)
	bg := context.Background()
	if err := s.CreateRefreshTokenSession(bg, "rt", "", req); err != nil {
		t.Fatalf("create: %v", err)
	}
	begin := func() context.Context { return beginRefresh(t, s, bg, true) }
	a, b := begin(), begin()
	if err := s.RotateRefreshToken(a, req.ID, "rt"); err != nil {
		t.Fatalf("rotate a: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.RotateRefreshToken(b, req.ID, "rt") }()
	time.Sleep(50 * time.Millisecond)
	if err := s.Commit(a); err != nil {
		t.Fatalf("commit a: %v", err)
	}
	err := <-done
	if !errors.Is(err, fosite.ErrSerializationFailure) {
		t.Fatalf("rotate b: %v, want ErrSerializationFailure", err)
	}
	if err := s.Rollback(b); err != nil {
		t.Fatalf("rollback b: %v", err)
	}
}

// TestOAuthConcurrentRotation: two refreshes of one token race in
// fosite's (read committed) transactions. The second waits for the first's
// row lock; within the grace period it then spends the grace use and both
// new token pairs stand, so the race never loses the grant; without a grace
// period it is refused and the first pair stands.
func TestOAuthConcurrentRotation(t *testing.T) {
	for _, grace := range []time.Duration{time.Hour, 0} {
		t.Run(fmt.Sprintf("grace=%s", grace), func(t *testing.T) {
			s, req := oauthTestStore(t)
			bg := idp.WithRefreshGrace(context.Background(), grace)
			if err := s.CreateRefreshTokenSession(bg, "rt", "", req); err != nil {
				t.Fatalf("create: %v", err)
			}
			a, b := beginRefresh(t, s, bg, false), beginRefresh(t, s, bg, false)
			if err := s.RotateRefreshToken(a, req.ID, "rt"); err != nil {
				t.Fatalf("rotate a: %v", err)
			}
			done := make(chan error, 1)
			go func() { done <- s.RotateRefreshToken(b, req.ID, "rt") }()
			if err := s.CreateRefreshTokenSession(a, "rt-a", "", req); err != nil {
				t.Fatalf("new refresh a: %v", err)
			}
			select {
			case err := <-done:
				t.Fatalf("rotate b finished (%v) while a held the row", err)
			case <-time.After(50 * time.Millisecond):
			}
			if err := s.Commit(a); err != nil {
				t.Fatalf("commit a: %v", err)
			}
			err := <-done
			if grace > 0 {
				if err != nil {
					t.Fatalf("rotate b within the grace period: %v", err)
				}
				if err := s.CreateRefreshTokenSession(b, "rt-b", "", req); err != nil {
					t.Fatalf("new refresh b: %v", err)
				}
				if err := s.Commit(b); err != nil {
					t.Fatalf("commit b: %v", err)
				}
			} else {
				if !errors.Is(err, fosite.ErrInactiveToken) {
					t.Fatalf("rotate b without grace: %v, want ErrInactiveToken", err)
				}
				if err := s.Rollback(b); err != nil {
					t.Fatalf("rollback b: %v", err)
				}
			}
			live := []string{"rt-a"}
			if grace > 0 {
				live = append(live, "rt-b")
			}
			for _, sig := range live {
				if _, err := s.GetRefreshTokenSession(bg, sig, openid.NewDefaultSession()); err != nil {
					t.Errorf("%s after the race: %v", sig, err)
				}
			}
		})
	}
}

// TestOAuthConcurrentCodeExchange: two exchanges of one authorization code
// race in fosite's (read committed) transactions, both having read the
// code while it was active. The second's invalidation waits for the
// first's row lock, then finds the code spent and fails, so the code buys
// one token pair only.
func TestOAuthConcurrentCodeExchange(t *testing.T) {
	s, req := oauthTestStore(t)
	bg := context.Background()
	if err := s.CreateAuthorizeCodeSession(bg, "code", req); err != nil {
		t.Fatalf("create: %v", err)
	}
	begin := func() context.Context {
		ctx, err := s.BeginTX(bg)
		if err != nil {
			t.Fatalf("BeginTX: %v", err)
		}
		// On a failure, end the transaction so the test database can go.
		t.Cleanup(func() { _ = s.Rollback(ctx) })
		if _, err := s.GetAuthorizeCodeSession(ctx, "code", openid.NewDefaultSession()); err != nil {
			t.Fatalf("get: %v", err)
		}
		return ctx
	}
	a, b := begin(), begin()
	if err := s.InvalidateAuthorizeCodeSession(a, "code"); err != nil {
		t.Fatalf("invalidate a: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.InvalidateAuthorizeCodeSession(b, "code") }()
	select {
	case err := <-done:
		t.Fatalf("invalidate b finished (%v) while a held the row", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := s.Commit(a); err != nil {
		t.Fatalf("commit a: %v", err)
	}
	if err := <-done; !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		t.Fatalf("invalidate b: %v, want ErrInvalidatedAuthorizeCode", err)
	}
	if err := s.Rollback(b); err != nil {
		t.Fatalf("rollback b: %v", err)
	}
}

// TestPurgeExpiredOAuthInBatches: the purge deletes in batches until no
// expired row is left, and keeps live rows.
func TestPurgeExpiredOAuthInBatches(t *testing.T) {
	s, req := oauthTestStore(t)
	ctx := context.Background()
	defer func(n int64) { gcBatch = n }(gcBatch)
	gcBatch = 3

	expired := req.Sanitize(nil).(*fosite.Request)
	expired.Session = openid.NewDefaultSession()
	expired.Session.SetExpiresAt(fosite.AccessToken, time.Now().Add(-time.Minute))
	for i := range 7 {
		if err := s.CreateAccessTokenSession(ctx, fmt.Sprintf("old-%d", i), expired); err != nil {
			t.Fatalf("create expired: %v", err)
		}
	}
	for i := range 2 {
		if err := s.CreateAccessTokenSession(ctx, fmt.Sprintf("live-%d", i), req); err != nil {
			t.Fatalf("create live: %v", err)
		}
	}
	if err := s.SetClientAssertionJWT(ctx, "old-jti", time.Now().Add(-time.Minute)); err != nil {
		t.Fatalf("jti: %v", err)
	}
	n, err := s.PurgeExpiredOAuth(ctx, time.Now())
	if err != nil {
		t.Fatalf("purge: %v", err)
	}
	if n != 8 {
		t.Errorf("purged %d rows, want 8 (7 tokens in 3 batches, 1 jti)", n)
	}
	var left int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM oauth_tokens`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 2 {
		t.Errorf("%d token rows left, want the 2 live ones", left)
	}
	for i := range 2 {
		if _, err := s.GetAccessTokenSession(ctx, fmt.Sprintf("live-%d", i), openid.NewDefaultSession()); err != nil {
			t.Errorf("live token %d after purge: %v", i, err)
		}
	}
}
