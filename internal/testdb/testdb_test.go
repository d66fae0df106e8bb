package testdb_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/nhsid/nhsid/internal/testdb"
)

func TestPoolIsMigratedAndIsolated(t *testing.T) {
	ctx := context.Background()
	a := testdb.Pool(t)
	b := testdb.Pool(t)

	var nameA, nameB string
	if err := a.QueryRow(ctx, "SELECT current_database()").Scan(&nameA); err != nil {
		t.Fatal(err)
	}
	if err := b.QueryRow(ctx, "SELECT current_database()").Scan(&nameB); err != nil {
		t.Fatal(err)
	}
	if nameA == nameB {
		t.Fatalf("two calls gave the same database %q", nameA)
	}

	for _, table := range []string{"organisations", "people", "credentials", "invites", "sessions", "flows", "challenges", "clients", "signing_keys"} {
		var n int
		if err := a.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatalf("table %s: %v", table, err)
		}
	}

	if _, err := a.Exec(ctx, "INSERT INTO organisations (code, name) VALUES ('X1', 'x')"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.QueryRow(ctx, "SELECT count(*) FROM organisations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database b sees %d rows written to a", n)
	}
}

func TestDatabaseDroppedAfterTest(t *testing.T) {
	var u string
	t.Run("inner", func(t *testing.T) {
		u = testdb.URL(t)
	})
	conn, err := pgx.Connect(context.Background(), u)
	if err == nil {
		conn.Close(context.Background())
		t.Fatal("database still exists after its test ended")
	}
}

func TestEmptyURLHasNoSchema(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testdb.EmptyURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("empty database has %d tables", n)
	}
}

func TestParallelCallers(t *testing.T) {
	for i := range 6 {
		code := fmt.Sprintf("ORG%d", i)
		t.Run(code, func(t *testing.T) {
			t.Parallel()
			pool := testdb.Pool(t)
			if _, err := pool.Exec(context.Background(), "INSERT INTO organisations (code, name) VALUES ($1, 'x')", code); err != nil {
				t.Fatal(err)
			}
		})
	}
}
