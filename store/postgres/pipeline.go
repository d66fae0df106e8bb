package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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

// queuedWrite is one write: sql with args, or, for a row insert (head
// set), head followed by len(args)/width rows of width placeholders.
type queuedWrite struct {
	sql   string
	args  []any
	head  string
	width int
	// tag, if set (sql writes only), receives the write's command tag
	// when its batch ran; a caller reads it once the send has succeeded
	// (for a pipeline: committed).
	tag *pgconn.CommandTag
}

// key tells writes that can merge apart: row inserts with one head merge.
func (w queuedWrite) key() string {
	if w.head != "" {
		return w.head
	}
	return w.sql
}

// queue adds w to the pipeline.
func (p *pipeline) queue(w queuedWrite) error {
	if p.sent {
		return errors.New("postgres: write pipeline already sent")
	}
	p.writes = append(p.writes, w)
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
		return p.queue(queuedWrite{sql: sql, args: args})
	}
	_, err := s.db(ctx).Exec(ctx, sql, args...)
	return err
}

// insertNoAnswer is execNoAnswer for a plain row insert: head is
// "INSERT INTO t (columns) VALUES " (nothing may follow the rows), and
// args are len(args)/width rows. In a pipeline, consecutive inserts with
// the same head, of one request or of the requests sharing a send, go as
// one multi-row INSERT; in a BeginTX transaction they wait for its next
// statement (txqueue.go).
func (s *Store) insertNoAnswer(ctx context.Context, head string, width int, args ...any) error {
	if width <= 0 || len(args) == 0 || len(args)%width != 0 {
		return fmt.Errorf("postgres: %d arguments are not rows of %d", len(args), width)
	}
	w := queuedWrite{head: head, width: width, args: args}
	if p, ok := pipelineOf(ctx); ok {
		return p.queue(w)
	}
	if q, ok := queuedTxOf(ctx); ok {
		return q.queue(w)
	}
	_, err := s.db(ctx).Exec(ctx, insertSQL(head, width, len(args)/width), args...)
	return err
}

// insertSQLs caches the statements insertSQL builds.
var insertSQLs sync.Map // insertShape → string

type insertShape struct {
	head        string
	width, rows int
}

// insertSQL is head followed by rows tuples of width placeholders.
func insertSQL(head string, width, rows int) string {
	k := insertShape{head, width, rows}
	if v, ok := insertSQLs.Load(k); ok {
		return v.(string)
	}
	var b strings.Builder
	b.WriteString(head)
	n := 0
	for r := range rows {
		if r > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for c := range width {
			if c > 0 {
				b.WriteByte(',')
			}
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		}
		b.WriteByte(')')
	}
	v, _ := insertSQLs.LoadOrStore(k, b.String())
	return v.(string)
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
	g.errs = make([]error, len(g.members))
	func() {
		// A panic would leave the group's callers waiting and, in the
		// goroutine that sends a later group, end the process.
		defer func() {
			if p := recover(); p != nil {
				for i := range g.errs {
					g.errs[i] = fmt.Errorf("send pipeline: panic: %v", p)
				}
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), pipeSendTimeout)
		defer cancel()
		if err := sendWrites(ctx, pool, g.members...); err != nil {
			if len(g.members) == 1 {
				g.errs[0] = err
			} else {
				for i, m := range g.members {
					g.errs[i] = sendWrites(ctx, pool, m)
				}
			}
		}
	}()
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
	c, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	sent := false
	defer func() {
		if !sent {
			// A panic in the middle of a batch leaves the connection in
			// an unknown state: close it, so the pool drops it.
			_ = c.Conn().Close(context.Background())
		}
		c.Release()
	}()
	err = sendMerged(ctx, c, orderWrites(ps))
	sent = true
	return err
}

// batchSender is a pool or a transaction.
type batchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// sendMerged sends ws, like inserts merged (mergeWrites), in one batch.
func sendMerged(ctx context.Context, db batchSender, ws []queuedWrite) error {
	var b pgx.Batch
	merged := mergeWrites(ws)
	for _, w := range merged {
		b.Queue(w.sql, w.args...)
	}
	br := db.SendBatch(ctx, &b)
	for _, w := range merged {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return err
		}
		if w.tag != nil {
			*w.tag = tag
		}
	}
	return br.Close()
}

// orderWrites lists the writes of ps. When they all have the same shape
// (the same statements in the same order, as concurrent requests of one
// kind do), the list goes position by position (every pipeline's first
// write, then every second write, …), so that like inserts sit together;
// each pipeline's own writes keep their order, and pipelines are
// independent requests. Otherwise pipeline by pipeline.
func orderWrites(ps []*pipeline) []queuedWrite {
	n := 0
	for _, p := range ps {
		n += len(p.writes)
	}
	out := make([]queuedWrite, 0, n)
	if !sameShape(ps) {
		for _, p := range ps {
			out = append(out, p.writes...)
		}
		return out
	}
	for i := range ps[0].writes {
		for _, p := range ps {
			out = append(out, p.writes[i])
		}
	}
	return out
}

func sameShape(ps []*pipeline) bool {
	for _, p := range ps[1:] {
		if len(p.writes) != len(ps[0].writes) {
			return false
		}
		for i, w := range p.writes {
			if w.key() != ps[0].writes[i].key() {
				return false
			}
		}
	}
	return true
}

// maxInsertRows caps the rows of one merged INSERT, and exactInsertRows
// is the most rows an INSERT of exactly its rows may have: a longer run is
// cut into power-of-two sizes, so that few distinct statements reach
// pgx's statement cache.
const (
	maxInsertRows   = 64
	exactInsertRows = 8
)

// mergeWrites turns the row inserts of each run of them (the writes
// between two other writes) into multi-row INSERTs, one per head in the
// order the heads first appear; other writes pass through. Inserts of one
// run may change order: each is a fresh row, and no table they write
// refers to another's rows.
func mergeWrites(ws []queuedWrite) []queuedWrite {
	out := make([]queuedWrite, 0, len(ws))
	for i := 0; i < len(ws); {
		if ws[i].head == "" {
			out = append(out, ws[i])
			i++
			continue
		}
		j := i
		for j < len(ws) && ws[j].head != "" {
			j++
		}
		run := ws[i:j]
		merged := make([]bool, len(run)) // into an earlier insert of its head
		for k, w := range run {
			if merged[k] {
				continue
			}
			n := 0
			for _, x := range run[k:] {
				if x.head == w.head && x.width == w.width {
					n += len(x.args)
				}
			}
			args := make([]any, 0, n)
			for m := k; m < len(run); m++ {
				if x := run[m]; x.head == w.head && x.width == w.width {
					args = append(args, x.args...)
					merged[m] = true
				}
			}
			out = appendInserts(out, w.head, w.width, args)
		}
		i = j
	}
	return out
}

// appendInserts appends INSERTs of args, rows of width, to out.
func appendInserts(out []queuedWrite, head string, width int, args []any) []queuedWrite {
	for rows := len(args) / width; rows > 0; {
		chunk := rows
		if rows > exactInsertRows {
			chunk = maxInsertRows
			for chunk > rows {
				chunk /= 2
			}
		}
		n := chunk * width
		out = append(out, queuedWrite{sql: insertSQL(head, width, chunk), args: args[:n:n]})
		args, rows = args[n:], rows-chunk
	}
	return out
}
