package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/federation/saml"
	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
	"github.com/nhsid/nhsid/store/postgres"
	"github.com/nhsid/nhsid/store/storetest"
)

func TestPostgresConformance(t *testing.T) {
	storetest.RunTests(t, func(t *testing.T) storetest.Store { return postgres.New(testdb.Pool(t)) })
}

// TestPostgresUnavailable: an unreachable database is reported as
// store.ErrUnavailable, never as not found (so an outage never reads as an
// unknown client or person).
func TestPostgresUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := postgres.New(pool)

	tests := []struct {
		name string
		call func() error
	}{
		{name: "GetPerson", call: func() error { _, err := s.GetPerson(ctx, "555000000001"); return err }},
		{name: "GetClient", call: func() error { _, err := s.GetClient(ctx, "client-1"); return err }},
		{name: "UpdatePerson", call: func() error {
			_, err := s.UpdatePerson(ctx, "555000000001", func(*policy.Person) error { return nil })
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("got %v, want store.ErrUnavailable", err)
			}
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, fosite.ErrNotFound) {
				t.Fatalf("outage reported as not found: %v", err)
			}
		})
	}
}

func TestPostgresAuditConformance(t *testing.T) {
	storetest.RunAuditTests(t, func(t *testing.T) audit.Store { return postgres.New(testdb.Pool(t)) })
}

func TestPostgresSAMLConformance(t *testing.T) {
	storetest.RunSAMLTests(t, func(t *testing.T) saml.Store { return postgres.New(testdb.Pool(t)) })
}

func TestPostgresLogoutConformance(t *testing.T) {
	storetest.RunLogoutTests(t, func(t *testing.T) storetest.LogoutStore { return postgres.New(testdb.Pool(t)) })
}

// TestSettingWarnings: the autovacuum warning follows the server's setting
// (which a test cannot change: it is server-wide).
func TestSettingWarnings(t *testing.T) {
	pool := testdb.Pool(t)
	var autovacuum string
	if err := pool.QueryRow(t.Context(), `SHOW autovacuum`).Scan(&autovacuum); err != nil {
		t.Fatal(err)
	}
	warnings, err := postgres.New(pool).SettingWarnings(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(warnings) == 1, autovacuum == "off"; got != want {
		t.Fatalf("autovacuum %s: warnings %q", autovacuum, warnings)
	}
}

// TestQueueCredentialUse: a sign-in's credential use waits in its write
// pipeline and commits with it; it leaves a credential revoked meanwhile
// as it is; without a pipeline nothing is queued.
func TestQueueCredentialUse(t *testing.T) {
	s := postgres.New(testdb.Pool(t))
	ctx := context.Background()
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for _, id := range []string{"live", "revoked"} {
		c := authn.Credential{ID: []byte(id), PersonUID: "555000000001", Name: id, AAL: 3,
			AAGUID: make([]byte, 16), SignCount: 7, Data: []byte(`{"n":1}`), CreatedAt: t0}
		if err := s.CreateCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if queued, err := s.QueueCredentialUse(ctx, []byte("live"), 9, []byte(`{"n":2}`), t0.Add(time.Hour)); queued || err != nil {
		t.Fatalf("without a pipeline: queued %v, %v", queued, err)
	}
	pctx, err := s.BeginPipeline(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"live", "revoked"} {
		if queued, err := s.QueueCredentialUse(pctx, []byte(id), 9, []byte(`{"n":2}`), t0.Add(time.Hour)); !queued || err != nil {
			t.Fatalf("%s: queued %v, %v", id, queued, err)
		}
	}
	if c, _ := s.GetCredential(ctx, []byte("live")); c.SignCount != 7 {
		t.Fatalf("written before the pipeline was sent: sign count %d", c.SignCount)
	}
	if _, err := s.UpdateCredential(ctx, []byte("revoked"), func(c *authn.Credential) error { c.RevokedAt = t0; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.SendPipeline(pctx); err != nil {
		t.Fatal(err)
	}
	live, _ := s.GetCredential(ctx, []byte("live"))
	if live.SignCount != 9 || string(live.Data) != `{"n":2}` || !live.LastUsedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("live credential after the pipeline: %+v", live)
	}
	if revoked, _ := s.GetCredential(ctx, []byte("revoked")); revoked.SignCount != 7 || !revoked.LastUsedAt.IsZero() {
		t.Errorf("revoked credential was written: %+v", revoked)
	}
}
