package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A write pipeline gathers writes that need no answer from the database
// and sends them in one round trip, where PostgreSQL runs them in one
// implicit transaction: all of them commit, or none. The client_credentials
// grant uses it for its token row and the token's audit event, which
// otherwise took four round trips (BEGIN, two INSERTs, COMMIT) with a
// pooled connection held across them (docs/performance.md).
//
// Only statements that the store sends through execNoAnswer are queued:
// they are the writes whose callers need no result (a row inserted under
// a fresh key). Every other statement in a pipelined context (a read, a
// write whose rows-affected count decides something, a store method with
// its own transaction) fails with errPipelineAnswer instead of acting on
// an answer that does not exist yet.

type pipeKey struct{}

// errPipelineAnswer is returned for a statement that needs an answer
// inside a write pipeline.
var errPipelineAnswer = errors.New("postgres: a statement that needs an answer cannot run inside a write pipeline")

type pipeline struct {
	batch pgx.Batch
	sent  bool
}

// queue adds sql to the pipeline.
func (p *pipeline) queue(sql string, args ...any) error {
	if p.sent {
		return errors.New("postgres: write pipeline already sent")
	}
	p.batch.Queue(sql, args...)
	return nil
}

func (p *pipeline) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, errPipelineAnswer
}

func (p *pipeline) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return nil, errPipelineAnswer
}

func (p *pipeline) QueryRow(context.Context, string, ...any) pgx.Row {
	return errRow{errPipelineAnswer}
}

// execNoAnswer runs a write whose caller needs no result: queued when ctx
// carries a write pipeline, else executed at once (in ctx's transaction,
// if any).
func (s *Store) execNoAnswer(ctx context.Context, sql string, args ...any) error {
	if p, ok := pipelineOf(ctx); ok {
		return p.queue(sql, args...)
	}
	_, err := s.db(ctx).Exec(ctx, sql, args...)
	return err
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// pipelineOf returns the pipeline carried by ctx, if any.
func pipelineOf(ctx context.Context) (*pipeline, bool) {
	p, ok := ctx.Value(pipeKey{}).(*pipeline)
	return p, ok
}

// BeginPipeline returns a context in which the store's writes are queued
// until SendPipeline. It cannot be nested in a transaction or another
// pipeline.
func (s *Store) BeginPipeline(ctx context.Context) (context.Context, error) {
	if _, ok := ctx.Value(txKey{}).(pgx.Tx); ok {
		return ctx, errors.New("begin pipeline: a transaction is open")
	}
	if _, ok := pipelineOf(ctx); ok {
		return ctx, errors.New("begin pipeline: a pipeline is open")
	}
	return context.WithValue(ctx, pipeKey{}, &pipeline{}), nil
}

// SendPipeline sends the writes queued in ctx in one round trip and one
// implicit transaction, and reports the first failure (after which nothing
// of the pipeline is committed). An empty pipeline sends nothing.
func (s *Store) SendPipeline(ctx context.Context) error {
	p, ok := pipelineOf(ctx)
	if !ok {
		return errors.New("send pipeline: no pipeline in context")
	}
	if p.sent {
		return errors.New("send pipeline: already sent")
	}
	p.sent = true
	if p.batch.Len() == 0 {
		return nil
	}
	if err := s.pool.SendBatch(ctx, &p.batch).Close(); err != nil {
		return fmt.Errorf("send pipeline: %w", translate(err))
	}
	return nil
}
