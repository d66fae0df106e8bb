package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/store/postgres"
	"github.com/nhsid/nhsid/store/storetest"
)

// TestPostgresJobLocks uses two pools on one database: two replicas.
func TestPostgresJobLocks(t *testing.T) {
	url := testdb.URL(t)
	open := func() *postgres.Store {
		pool, err := pgxpool.New(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		return postgres.New(pool)
	}
	storetest.RunLockTests(t, open(), open())
}
