// Package testdb gives tests a fresh, fully migrated PostgreSQL database of
// their own. The server comes from NHSID_TEST_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable, a URL, not a
// keyword/value DSN). Each call clones a template database that has every
// migration in migrations/ applied; the template's name carries a hash of the
// embedded migration files, so changing a migration builds a new one. The
// template is built once, under an advisory lock, because test packages run
// as parallel processes. Databases are dropped when the test ends.
//
// If the server cannot be reached the test fails (it never skips), with a
// message saying how to start PostgreSQL. Only tests import this package.
package testdb

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nhsid/nhsid/migrations"
)

// EnvURL names the environment variable with the server URL.
const EnvURL = "NHSID_TEST_DATABASE_URL"

const defaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// templateLockKey is the pg_advisory_lock key guarding template creation.
const templateLockKey int64 = 0x6e687369_64746d70 // "nhsidtmp"

const startHint = "is PostgreSQL running? Start it with: " +
	"pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start " +
	"(or set " + EnvURL + " to a server where this user may CREATE DATABASE)"

// URL creates a fresh migrated database and returns its URL. The database is
// dropped in t.Cleanup.
func URL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	base := serverURL()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("testdb: cannot connect to %s: %v\n%s", redact(base), err, startHint)
	}
	defer admin.Close(context.Background())

	tmpl, err := ensureTemplate(ctx, admin, base)
	if err != nil {
		t.Fatalf("testdb: build template database: %v", err)
	}

	return create(t, ctx, admin, base, tmpl)
}

// EmptyURL creates a fresh database with no schema at all (for testing the
// migrations themselves) and returns its URL. It is dropped in t.Cleanup.
func EmptyURL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := serverURL()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("testdb: cannot connect to %s: %v\n%s", redact(base), err, startHint)
	}
	defer admin.Close(context.Background())
	return create(t, ctx, admin, base, "template0")
}

// create makes a database from tmpl and registers its drop.
func create(t testing.TB, ctx context.Context, admin *pgx.Conn, base, tmpl string) string {
	t.Helper()
	name := "nhsid_test_" + randomHex(8)
	if err := createFrom(ctx, admin, name, tmpl); err != nil {
		t.Fatalf("testdb: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("testdb: drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(name)+" WITH (FORCE)"); err != nil {
			t.Errorf("testdb: drop %s: %v", name, err)
		}
	})
	return withDatabase(base, name)
}

// Pool creates a fresh migrated database and returns a pool connected to
// it. The pool is closed and the database dropped in t.Cleanup.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	u := URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatalf("testdb: open pool: %v", err)
	}
	// Registered after URL's cleanup, so it runs first.
	t.Cleanup(pool.Close)
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("testdb: ping %s: %v", redact(u), err)
	}
	return pool
}

func serverURL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return defaultURL
}

// ensureTemplate returns the name of the template database for the current
// migrations, building it if needed. Building happens under a session
// advisory lock on admin; it is migrated under a temporary name and renamed
// when complete, so an existing template is always a finished one.
func ensureTemplate(ctx context.Context, admin *pgx.Conn, base string) (string, error) {
	sum, err := migrationsHash()
	if err != nil {
		return "", err
	}
	name := "nhsid_tmpl_" + sum
	if ok, err := databaseExists(ctx, admin, name); err != nil || ok {
		return name, err
	}

	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock($1)", templateLockKey); err != nil {
		return "", fmt.Errorf("advisory lock: %w", err)
	}
	defer admin.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", templateLockKey)

	if ok, err := databaseExists(ctx, admin, name); err != nil || ok {
		return name, err // another process built it while we waited
	}
	build := name + "_build"
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(build)+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("drop stale %s: %w", build, err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+quote(build)); err != nil {
		return "", fmt.Errorf("create %s: %w", build, err)
	}
	if err := migrations.Up(ctx, withDatabase(base, build)); err != nil {
		return "", fmt.Errorf("migrate %s: %w", build, err)
	}
	// migrations.Up closed its connections; rename needs none open.
	if err := retryBusy(ctx, func() error {
		_, err := admin.Exec(ctx, "ALTER DATABASE "+quote(build)+" RENAME TO "+quote(name))
		return err
	}); err != nil {
		return "", fmt.Errorf("rename %s: %w", build, err)
	}
	dropStaleTemplates(ctx, admin, name)
	return name, nil
}

// dropStaleTemplates removes templates of older migration sets, best effort.
func dropStaleTemplates(ctx context.Context, admin *pgx.Conn, keep string) {
	rows, err := admin.Query(ctx,
		`SELECT datname FROM pg_database WHERE datname LIKE 'nhsid\_tmpl\_%' AND datname <> $1`, keep)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, n := range names {
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(n))
	}
}

func createFrom(ctx context.Context, admin *pgx.Conn, name, tmpl string) error {
	return retryBusy(ctx, func() error {
		_, err := admin.Exec(ctx, "CREATE DATABASE "+quote(name)+" TEMPLATE "+quote(tmpl))
		return err
	})
}

// retryBusy retries fn for a few seconds while Postgres reports that the
// database is being accessed by other users (SQLSTATE 55006).
func retryBusy(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := fn()
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55006" || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func databaseExists(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up database %s: %w", name, err)
	}
	return ok, nil
}

// migrationsHash is a short hash of every embedded migration file's name and
// content.
func migrationsHash() (string, error) {
	fsys := migrations.FS()
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return "", fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return "", fmt.Errorf("read migration %s: %w", n, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// withDatabase returns base with its database name replaced.
func withDatabase(base, name string) string {
	u, err := url.Parse(base)
	if err != nil {
		panic(fmt.Sprintf("testdb: %s must be a URL: %v", EnvURL, err))
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

func quote(ident string) string {
	return `"` + strings.ReplaceAll(ident, `"`, `""`) + `"`
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
