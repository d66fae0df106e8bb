package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/audit"
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
