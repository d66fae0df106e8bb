package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// queuedTx is the transaction BeginTX hands to fosite. Row inserts that
// need no answer (insertNoAnswer: token rows, audit records) wait in it
// and go to the database together, like inserts merged, just before the
// transaction's next statement or its COMMIT. A code exchange or a refresh
// writes two token rows and an audit record this way in one round trip
// instead of three. Every other statement first sends what waits, so the
// transaction reads its own writes and keeps their order; a queued insert
// that fails fails that statement (or the COMMIT), and the transaction
// with it.
type queuedTx struct {
	pgx.Tx
	queued []queuedWrite
	closed bool // committed or rolled back
}

// queue adds w to what waits; after the transaction ended it fails, as a
// statement on a closed transaction does.
func (q *queuedTx) queue(w queuedWrite) error {
	if q.closed {
		return pgx.ErrTxClosed
	}
	q.queued = append(q.queued, w)
	return nil
}

// queuedTxOf returns the queued transaction carried by ctx, if any.
func queuedTxOf(ctx context.Context) (*queuedTx, bool) {
	q, ok := ctx.Value(txKey{}).(*queuedTx)
	return q, ok
}

// flush sends the waiting inserts.
func (q *queuedTx) flush(ctx context.Context) error {
	if len(q.queued) == 0 {
		return nil
	}
	ws := q.queued
	q.queued = nil
	return sendMerged(ctx, q.Tx, ws)
}

func (q *queuedTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := q.flush(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return q.Tx.Exec(ctx, sql, args...)
}

func (q *queuedTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := q.flush(ctx); err != nil {
		return nil, err
	}
	return q.Tx.Query(ctx, sql, args...)
}

func (q *queuedTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := q.flush(ctx); err != nil {
		return errRow{err}
	}
	return q.Tx.QueryRow(ctx, sql, args...)
}

func (q *queuedTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := q.flush(ctx); err != nil {
		return errBatch{err}
	}
	return q.Tx.SendBatch(ctx, b)
}

func (q *queuedTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	if err := q.flush(ctx); err != nil {
		return 0, err
	}
	return q.Tx.CopyFrom(ctx, table, cols, src)
}

func (q *queuedTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := q.flush(ctx); err != nil {
		return nil, err
	}
	return q.Tx.Begin(ctx)
}

// Commit sends what waits, then commits; if the inserts fail, it rolls
// back and reports their failure.
func (q *queuedTx) Commit(ctx context.Context) error {
	defer func() { q.closed = true }()
	if err := q.flush(ctx); err != nil {
		_ = q.Tx.Rollback(ctx)
		return err
	}
	return q.Tx.Commit(ctx)
}

// Rollback drops what waits and rolls back.
func (q *queuedTx) Rollback(ctx context.Context) error {
	q.queued, q.closed = nil, true
	return q.Tx.Rollback(ctx)
}

// errBatch is the results of a batch that was never sent.
type errBatch struct{ err error }

func (e errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, e.err }
func (e errBatch) Query() (pgx.Rows, error)         { return nil, e.err }
func (e errBatch) QueryRow() pgx.Row                { return errRow{e.err} }
func (e errBatch) Close() error                     { return e.err }
func (e errBatch) Tx() pgx.Tx                       { return nil }
