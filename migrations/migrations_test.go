package migrations_test

import (
	"context"
	"database/sql"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3"

	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/migrations"
)

func TestUpAppliesAllThenIsNoOp(t *testing.T) {
	ctx := context.Background()
	u := testdb.EmptyURL(t)

	before, err := migrations.Status(ctx, u)
	if err != nil {
		t.Fatalf("status on empty database: %v", err)
	}
	files, err := fs.Glob(migrations.FS(), "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != len(files) || len(files) == 0 {
		t.Fatalf("status lists %d migrations, %d files embedded", len(before), len(files))
	}
	for _, s := range before {
		if s.Applied || !s.AppliedAt.IsZero() {
			t.Errorf("%s applied before Up: %+v", s.Name, s)
		}
	}

	if err := migrations.Up(ctx, u); err != nil {
		t.Fatalf("first Up: %v", err)
	}
	first := mustStatus(t, u)
	if err := migrations.Up(ctx, u); err != nil {
		t.Fatalf("second Up: %v", err)
	}
	second := mustStatus(t, u)

	for i, s := range second {
		if !s.Applied || s.AppliedAt.IsZero() {
			t.Errorf("%s not applied: %+v", s.Name, s)
		}
		if !s.AppliedAt.Equal(first[i].AppliedAt) {
			t.Errorf("%s re-applied by the second Up: %v then %v", s.Name, first[i].AppliedAt, s.AppliedAt)
		}
		if !strings.HasSuffix(s.Name, ".sql") || s.Version != int64(i+1) {
			t.Errorf("migration %d: version %d name %q", i, s.Version, s.Name)
		}
	}

	// Exactly one row per migration in goose's table (plus its version 0).
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM goose_db_version WHERE version_id > 0").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(files) {
		t.Errorf("goose_db_version has %d rows, want %d", n, len(files))
	}
}

func TestConcurrentUp(t *testing.T) {
	ctx := context.Background()
	u := testdb.EmptyURL(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- migrations.Up(ctx, u) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Up: %v", err)
		}
	}
	for _, s := range mustStatus(t, u) {
		if !s.Applied {
			t.Errorf("%s not applied", s.Name)
		}
	}
}

func TestEveryFileHasUpAndDown(t *testing.T) {
	// Every file must carry both sections so an operator can roll back.
	files, err := fs.Glob(migrations.FS(), "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			b, err := fs.ReadFile(migrations.FS(), name)
			if err != nil {
				t.Fatal(err)
			}
			for _, marker := range []string{"-- +goose Up", "-- +goose Down"} {
				if !strings.Contains(string(b), marker) {
					t.Errorf("missing %q", marker)
				}
			}
		})
	}
}

func TestUpBadURL(t *testing.T) {
	tests := []struct {
		name string
		url  string
	}{
		{name: "empty", url: ""},
		{name: "unreachable", url: "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := migrations.Up(context.Background(), tt.url); err == nil {
				t.Fatal("Up succeeded")
			}
		})
	}
}

func mustStatus(t *testing.T, u string) []migrations.MigrationStatus {
	t.Helper()
	st, err := migrations.Status(context.Background(), u)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// TestDownThenUp: every Down section reverts its Up cleanly (nothing of
// nhsid's left behind), and the schema can then be rebuilt.
func TestDownThenUp(t *testing.T) {
	ctx := context.Background()
	u := testdb.EmptyURL(t)
	if err := migrations.Up(ctx, u); err != nil {
		t.Fatalf("Up: %v", err)
	}
	db, err := sql.Open("pgx", u)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS(), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("down to 0: %v", err)
	}
	var tables []string
	rows, err := db.QueryContext(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'goose_db_version'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(tables) != 0 {
		t.Errorf("tables left after migrating down: %v", tables)
	}
	if err := migrations.Up(ctx, u); err != nil {
		t.Fatalf("Up after down: %v", err)
	}
	for _, s := range mustStatus(t, u) {
		if !s.Applied {
			t.Errorf("%s not re-applied", s.Name)
		}
	}
}
