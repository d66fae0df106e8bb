// Package migrations owns nhsid's PostgreSQL schema: numbered goose SQL files
// (NNNN_name.sql, each with "-- +goose Up" and "-- +goose Down" sections)
// embedded in the binary, and the functions that apply them and report their
// state. Each migration runs in its own transaction (except those marked
// "-- +goose NO TRANSACTION", which build indexes CONCURRENTLY and are
// written to be run again after a failure) and is recorded in goose's
// version table; a PostgreSQL session-level advisory lock serialises
// replicas that start at the same time, and applying an up-to-date schema
// is a no-op.
//
// It is imported by cmd/nhsid (migrate up|status, and serve when configured
// to migrate at start) and by internal/testdb. Run it with the schema
// owner's URL, never as the least-privilege serving role.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var files embed.FS

// FS returns the embedded migration files (for fingerprinting the schema,
// as internal/testdb does).
func FS() fs.FS { return files }

// MigrationStatus is the state of one migration in a database.
type MigrationStatus struct {
	Version int64
	// Name is the file name, e.g. "0001_core.sql".
	Name    string
	Applied bool
	// AppliedAt is zero while the migration is pending.
	AppliedAt time.Time
}

// Up applies every pending migration to the database at databaseURL, in
// order, each in its own transaction (but see the package comment). It
// waits (up to five minutes) for the advisory lock held by another replica
// migrating the same database.
func Up(ctx context.Context, databaseURL string) error {
	p, closeFn, err := newProvider(databaseURL)
	if err != nil {
		return err
	}
	defer closeFn()
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate up: %w", err)
	}
	return nil
}

// Status reports every known migration and whether it has been applied.
func Status(ctx context.Context, databaseURL string) ([]MigrationStatus, error) {
	p, closeFn, err := newProvider(databaseURL)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate status: %w", err)
	}
	out := make([]MigrationStatus, 0, len(st))
	for _, s := range st {
		ms := MigrationStatus{Applied: s.State == goose.StateApplied}
		if s.Source != nil {
			ms.Version = s.Source.Version
			ms.Name = path.Base(s.Source.Path)
		}
		if ms.Applied {
			ms.AppliedAt = s.AppliedAt.UTC()
		}
		out = append(out, ms)
	}
	return out, nil
}

func newProvider(databaseURL string) (*goose.Provider, func(), error) {
	if databaseURL == "" {
		return nil, nil, errors.New("migrate: empty database URL")
	}
	db, err := sql.Open("pgx", databaseURL)
	if err != nil {
		return nil, nil, fmt.Errorf("migrate: open database: %w", err)
	}
	// Retry every second for up to five minutes while another replica
	// holds the lock.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("migrate: session locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, files,
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("migrate: %w", err)
	}
	return p, func() { p.Close() }, nil
}
