package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// queuedTx is the transaction BeginTX hands to fosite, on a pooled
// connection of its own. It sends nothing until it must:
//   - BEGIN goes with the transaction's first statement;
//   - row inserts that need no answer (insertNoAnswer: token rows, audit
//     records) wait, and go merged (like inserts as one) with its next
//     statement or with its COMMIT.
//
// A code exchange or a refresh is then two round trips (BEGIN with the
// spend of the code or token; the new token rows, the audit record and
// COMMIT) where a pgx transaction took four, and a transaction that sent
// nothing commits without a round trip. Every statement goes after what
// waits, in the same batch, so the transaction reads its own writes and
// keeps their order; a waiting insert that fails fails that statement (or
// the COMMIT), and the transaction with it.
type queuedTx struct {
	conn   *pgxpool.Conn
	begun  bool // BEGIN has been sent
	queued []queuedWrite
	closed bool // committed or rolled back: the connection is released
}

var _ pgx.Tx = (*queuedTx)(nil)

// errNestedTx refuses savepoints, which nhsid does not use.
var errNestedTx = errors.New("postgres: nested transactions are not supported")

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

// send sends, in one round trip, BEGIN if it has not been sent, what
// waits, and then the statements tail queues; it returns the results
// positioned at tail's first statement (the caller closes them).
func (q *queuedTx) send(ctx context.Context, tail func(*pgx.Batch)) (pgx.BatchResults, error) {
	if q.closed {
		return nil, pgx.ErrTxClosed
	}
	b := &pgx.Batch{}
	begin := !q.begun
	if begin {
		b.Queue("begin")
	}
	merged := mergeWrites(q.queued)
	q.queued = nil
	for _, w := range merged {
		b.Queue(w.sql, w.args...)
	}
	tail(b)
	br := q.conn.SendBatch(ctx, b)
	q.begun = true
	if begin {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, err
		}
	}
	for _, w := range merged {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return nil, err
		}
		if w.tag != nil {
			*w.tag = tag
		}
	}
	return br, nil
}

// hasQueryOptions reports whether args begin with pgx's per-query options
// (an execution mode, result formats, a rewriter), which a batch does not
// take: such a statement goes on its own after what waits.
func hasQueryOptions(args []any) bool {
	if len(args) == 0 {
		return false
	}
	switch args[0].(type) {
	case pgx.QueryExecMode, pgx.QueryResultFormats, pgx.QueryResultFormatsByOID, pgx.QueryRewriter:
		return true
	}
	return false
}

func (q *queuedTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	// Without arguments pgx sends a statement by the simple protocol, which
	// also takes several statements in one string (a batch does not).
	if len(args) == 0 || hasQueryOptions(args) {
		if err := q.flush(ctx); err != nil {
			return pgconn.CommandTag{}, err
		}
		return q.conn.Exec(ctx, sql, args...)
	}
	br, err := q.send(ctx, func(b *pgx.Batch) { b.Queue(sql, args...) })
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

func (q *queuedTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if hasQueryOptions(args) {
		if err := q.flush(ctx); err != nil {
			return nil, err
		}
		return q.conn.Query(ctx, sql, args...)
	}
	br, err := q.send(ctx, func(b *pgx.Batch) { b.Queue(sql, args...) })
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

func (q *queuedTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if hasQueryOptions(args) {
		if err := q.flush(ctx); err != nil {
			return errRow{err}
		}
		return q.conn.QueryRow(ctx, sql, args...)
	}
	br, err := q.send(ctx, func(b *pgx.Batch) { b.Queue(sql, args...) })
	if err != nil {
		return errRow{err}
	}
	return batchRow{br: br}
}

// SendBatch sends BEGIN and what waits first, then b on its own.
func (q *queuedTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := q.flush(ctx); err != nil {
		return errBatch{err}
	}
	return q.conn.SendBatch(ctx, b)
}

func (q *queuedTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	if err := q.flush(ctx); err != nil {
		return 0, err
	}
	return q.conn.CopyFrom(ctx, table, cols, src)
}

// flush sends BEGIN, if it has not been sent, and what waits.
func (q *queuedTx) flush(ctx context.Context) error {
	if q.begun && len(q.queued) == 0 {
		if q.closed {
			return pgx.ErrTxClosed
		}
		return nil
	}
	br, err := q.send(ctx, func(*pgx.Batch) {})
	if err != nil {
		return err
	}
	return br.Close()
}

func (q *queuedTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if q.closed {
		return nil, pgx.ErrTxClosed
	}
	return q.conn.Conn().Prepare(ctx, name, sql)
}

func (q *queuedTx) Begin(context.Context) (pgx.Tx, error) { return nil, errNestedTx }

func (q *queuedTx) LargeObjects() pgx.LargeObjects {
	panic("postgres: large objects are not supported in a queued transaction")
}

func (q *queuedTx) Conn() *pgx.Conn { return q.conn.Conn() }

// Commit sends what waits and COMMIT together; if the inserts fail, it
// rolls back and reports their failure. The connection goes back to the
// pool either way.
func (q *queuedTx) Commit(ctx context.Context) error {
	if q.closed {
		return pgx.ErrTxClosed
	}
	if !q.begun && len(q.queued) == 0 {
		q.release()
		return nil // nothing was sent: nothing to commit
	}
	br, err := q.send(ctx, func(b *pgx.Batch) { b.Queue("commit") })
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = br.Exec()
		if cerr := br.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		q.abort(ctx)
		return err
	}
	q.release()
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// Rollback drops what waits and rolls back what was sent.
func (q *queuedTx) Rollback(ctx context.Context) error {
	if q.closed {
		return pgx.ErrTxClosed
	}
	q.queued = nil
	if !q.begun {
		q.release()
		return nil
	}
	_, err := q.conn.Exec(ctx, "rollback")
	q.release()
	return err
}

// abort ends a transaction whose statements failed: a rollback, for a
// connection still in the transaction, then back to the pool (which
// closes a connection left in a transaction or broken).
func (q *queuedTx) abort(ctx context.Context) {
	if q.begun && !q.conn.Conn().IsClosed() {
		_, _ = q.conn.Exec(context.WithoutCancel(ctx), "rollback")
	}
	q.release()
}

func (q *queuedTx) release() {
	q.queued, q.closed = nil, true
	q.conn.Release()
}

// batchRows are a statement's rows in a batch; closing them closes the
// batch.
type batchRows struct {
	pgx.Rows
	br       pgx.BatchResults
	closed   bool
	closeErr error
}

func (r *batchRows) Close() {
	r.Rows.Close()
	if !r.closed {
		r.closed = true
		r.closeErr = r.br.Close()
	}
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.closeErr
}

// batchRow is a statement's one row in a batch; scanning it closes the
// batch.
type batchRow struct{ br pgx.BatchResults }

func (r batchRow) Scan(dest ...any) error {
	err := r.br.QueryRow().Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

// errBatch is the results of a batch that was never sent.
type errBatch struct{ err error }

func (e errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, e.err }
func (e errBatch) Query() (pgx.Rows, error)         { return nil, e.err }
func (e errBatch) QueryRow() pgx.Row                { return errRow{e.err} }
func (e errBatch) Close() error                     { return e.err }
func (e errBatch) Tx() pgx.Tx                       { return nil }
