package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
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
	writes []queuedWrite
	sent   bool
}

type queuedWrite struct {
	sql  string
	args []any
}

// queue adds sql to the pipeline.
func (p *pipeline) queue(sql string, args ...any) error {
	if p.sent {
		return errors.New("postgres: write pipeline already sent")
	}
	p.writes = append(p.writes, queuedWrite{sql, args})
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
//
// Pipelines sent at the same time share the round trip and the commit
// (group commit, as audit.Log.RecordGrouped does for audit events): at
// most one send is in flight, and the pipelines arriving meanwhile go
// together in the next. If a shared send fails, nothing of it committed,
// and each pipeline of the group is sent again on its own, so that only
// the failing one reports the failure. Every caller waits for the commit
// of its own writes.
func (s *Store) SendPipeline(ctx context.Context) error {
	p, ok := pipelineOf(ctx)
	if !ok {
		return errors.New("send pipeline: no pipeline in context")
	}
	if p.sent {
		return errors.New("send pipeline: already sent")
	}
	p.sent = true
	if len(p.writes) == 0 {
		return nil
	}
	return s.pipes.send(ctx, s.pool, p)
}

// pipeSender groups the pipelines of concurrent requests.
type pipeSender struct {
	mu       sync.Mutex
	pending  *pipeGroup // gathering while a send is in flight
	flushing bool
}

type pipeGroup struct {
	members []*pipeline
	errs    []error // per member, set before done is closed
	done    chan struct{}
}

// pipeSendTimeout bounds one shared send; it does not depend on any one
// caller's context.
const pipeSendTimeout = 10 * time.Second

func (ps *pipeSender) send(ctx context.Context, pool *pgxpool.Pool, p *pipeline) error {
	ps.mu.Lock()
	if ps.pending == nil {
		ps.pending = &pipeGroup{done: make(chan struct{})}
	}
	g := ps.pending
	i := len(g.members)
	g.members = append(g.members, p)
	lead := !ps.flushing
	if lead {
		ps.flushing = true
		ps.pending = nil
	}
	ps.mu.Unlock()
	if lead {
		ps.flush(pool, g)
	}
	select {
	case <-g.done:
		if err := g.errs[i]; err != nil {
			return fmt.Errorf("send pipeline: %w", translate(err))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("send pipeline: %w", ctx.Err())
	}
}

// flush sends g, then hands over to the group gathered meanwhile, if any.
func (ps *pipeSender) flush(pool *pgxpool.Pool, g *pipeGroup) {
	ctx, cancel := context.WithTimeout(context.Background(), pipeSendTimeout)
	g.errs = make([]error, len(g.members))
	if err := sendWrites(ctx, pool, g.members...); err != nil {
		if len(g.members) == 1 {
			g.errs[0] = err
		} else {
			for i, m := range g.members {
				g.errs[i] = sendWrites(ctx, pool, m)
			}
		}
	}
	cancel()
	close(g.done)
	ps.mu.Lock()
	next := ps.pending
	ps.pending = nil
	if next == nil {
		ps.flushing = false
	}
	ps.mu.Unlock()
	if next != nil {
		go ps.flush(pool, next)
	}
}

// sendWrites sends the writes of ps in one batch: one round trip, one
// implicit transaction. A fresh batch each time, because pgx keeps state
// in a sent batch's queries.
func sendWrites(ctx context.Context, pool *pgxpool.Pool, ps ...*pipeline) error {
	var b pgx.Batch
	for _, p := range ps {
		for _, w := range p.writes {
			b.Queue(w.sql, w.args...)
		}
	}
	return pool.SendBatch(ctx, &b).Close()
}
