// Package postgres is the production store on PostgreSQL through pgx/v5
// (pgxpool). It implements every storage interface that policy, authn and
// idp declare. SQL lives only here, next to the code that runs it, and
// driver errors are translated here into the store package's errors (and
// fosite's, for fosite storage). The schema is in migrations/.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/store"
)

// Store is the PostgreSQL store.
type Store struct {
	pool    *pgxpool.Pool
	clients *clientCache // recently read clients (clientcache.go)
	pipes   pipeSender   // shared sends of write pipelines (pipeline.go)
	// grouped token look-ups by kind (groupread.go)
	reads map[string]*groupReader
}

// New wraps a pool. The schema must already be migrated.
func New(pool *pgxpool.Pool) *Store {
	s := &Store{pool: pool, clients: newClientCache(), reads: map[string]*groupReader{}}
	for _, kind := range []string{idp.TokenKindAccess, idp.TokenKindRefresh} {
		s.reads[kind] = &groupReader{kind: kind}
	}
	return s
}

// Pool returns the underlying pool (for health checks).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// querier is what both a pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

type txKey struct{}

// db returns the transaction (see BeginTX) or write pipeline (see
// BeginPipeline) carried by ctx, or the pool.
func (s *Store) db(ctx context.Context) querier {
	if tx, ok := ctx.Value(txKey{}).(pgx.Tx); ok {
		return tx
	}
	if p, ok := pipelineOf(ctx); ok {
		return p
	}
	return s.pool
}

// outsideTx reports whether ctx carries neither a transaction nor a write
// pipeline, so that the store's statements go to the pool.
func (s *Store) outsideTx(ctx context.Context) bool {
	if _, ok := ctx.Value(txKey{}).(pgx.Tx); ok {
		return false
	}
	_, ok := pipelineOf(ctx)
	return !ok
}

// inTx runs fn in the transaction carried by ctx, or in a new one; never
// inside a write pipeline.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	if tx, ok := ctx.Value(txKey{}).(pgx.Tx); ok {
		return fn(tx)
	}
	if _, ok := pipelineOf(ctx); ok {
		return errPipelineAnswer
	}
	err := pgx.BeginFunc(ctx, s.pool, fn)
	return translate(err)
}

// translate maps driver errors to the store package's errors, keeping the
// original wrapped for the log.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %v", store.ErrNotFound, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505":
			return fmt.Errorf("%w: %s", store.ErrExists, pgErr.ConstraintName)
		case "40001", "40P01":
			return fmt.Errorf("%w: %s", store.ErrConflict, pgErr.Code)
		case "23514":
			if pgErr.ConstraintName == "flows_login_challenge_once" {
				return fmt.Errorf("%w: login challenge already used", store.ErrConflict)
			}
		}
		return err
	}
	if isConnError(err) {
		return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
	}
	return err
}

// isConnError reports whether err means the database could not be reached.
func isConnError(err error) bool {
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	// A connection lost mid-query (the database went away, a proxy cut
	// it) surfaces as EOF or a network error rather than a ConnectError.
	var netErr net.Error
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.As(err, &netErr) || pgconn.Timeout(err) {
		return true
	}
	return pgconn.SafeToRetry(err) || errors.Is(err, context.DeadlineExceeded)
}

// SettingWarnings returns what an operator should be told about the
// database's settings. Today that is autovacuum being off: every sign-in
// inserts and deletes flow, challenge and code rows and rewrites a risk
// profile, and without vacuum those tables fill with dead rows (sign-in
// throughput fell by a fifth within minutes in the load tests).
func (s *Store) SettingWarnings(ctx context.Context) ([]string, error) {
	var autovacuum string
	if err := s.pool.QueryRow(ctx, `SHOW autovacuum`).Scan(&autovacuum); err != nil {
		return nil, fmt.Errorf("read settings: %w", translate(err))
	}
	var out []string
	if autovacuum != "on" {
		out = append(out, "PostgreSQL autovacuum is off: nhsid's flow, challenge, token and risk tables will fill with dead rows and slow every sign-in; turn it on (the default) or VACUUM those tables often")
	}
	return out, nil
}
