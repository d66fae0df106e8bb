package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Token look-ups outside a transaction (introspection, userinfo, the first
// read of a refresh) are grouped across concurrent requests, as writes are
// (pipeSender): at most groupReadsInFlight look-up statements per kind are
// in flight, and the look-ups arriving meanwhile go together in the next,
// as one IN list over the primary key. A look-up joins only a group not
// yet sent, so it never sees older data than a statement of its own would.
// Under load this turns many statements, each a round trip and a wake-up
// of a backend, into a few; alone, a look-up is sent at once.

// groupReader groups the look-ups of one token kind.
type groupReader struct {
	kind    string
	mu      sync.Mutex
	pending *readGroup // gathering while groupReadsInFlight reads are in flight
	reading int        // reads in flight
}

type readGroup struct {
	hashes [][]byte
	rows   map[string]*oauthRow // by hash, set before done is closed
	err    error
	done   chan struct{}
}

// groupReadTimeout bounds one shared read; it does not depend on any one
// caller's context.
const groupReadTimeout = 10 * time.Second

// groupReadsInFlight is how many grouped reads of a kind may be in flight:
// two, so that at low load a look-up does not wait for another's and the
// database's backends can work in parallel.
const groupReadsInFlight = 2

// groupReadMax bounds the keys of one statement; a look-up that finds the
// gathering group full reads on its own.
const groupReadMax = 256

// groupReadSQL returns the statement that reads n rows of one kind by
// primary key: `signature_hash IN ($2, …)` with n parameters. An IN list
// of fixed length, not `= ANY($2)`: PostgreSQL cannot tell an array
// parameter's length, so it planned that statement afresh on every call,
// which cost more than the grouping saved. The lengths are powers of two
// (the keys padded by repeating the last), so few statements are prepared.
func groupReadSQL(n int) string {
	groupReadSQLs.Lock()
	defer groupReadSQLs.Unlock()
	if sql, ok := groupReadSQLs.m[n]; ok {
		return sql
	}
	var b strings.Builder
	b.WriteString(`SELECT signature_hash, ` + oauthCols + ` FROM oauth_tokens WHERE kind = $1 AND signature_hash IN (`)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i+2)
	}
	b.WriteString(")")
	groupReadSQLs.m[n] = b.String()
	return b.String()
}

var groupReadSQLs = struct {
	sync.Mutex
	m map[int]string
}{m: map[int]string{}}

// get returns the row of hash, or pgx.ErrNoRows; grouped is false when
// the group was full and the caller should read on its own.
func (g *groupReader) get(ctx context.Context, pool querier, hash []byte) (r *oauthRow, grouped bool, err error) {
	g.mu.Lock()
	if g.pending == nil {
		g.pending = &readGroup{done: make(chan struct{})}
	}
	grp := g.pending
	if len(grp.hashes) >= groupReadMax {
		g.mu.Unlock()
		return nil, false, nil
	}
	grp.hashes = append(grp.hashes, hash)
	lead := g.reading < groupReadsInFlight
	if lead {
		g.reading++
		g.pending = nil
	}
	g.mu.Unlock()
	if lead {
		g.read(pool, grp)
	}
	select {
	case <-grp.done:
		if grp.err != nil {
			return nil, true, grp.err
		}
		r, ok := grp.rows[string(hash)]
		if !ok {
			return nil, true, pgx.ErrNoRows
		}
		return r, true, nil
	case <-ctx.Done():
		return nil, true, ctx.Err()
	}
}

// read reads grp, then hands over to the group gathered meanwhile, if any.
func (g *groupReader) read(pool querier, grp *readGroup) {
	func() {
		// A panic would leave the group's callers waiting and, in the
		// goroutine that reads a later group, end the process.
		defer func() {
			if p := recover(); p != nil {
				grp.rows, grp.err = nil, fmt.Errorf("group read: panic: %v", p)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), groupReadTimeout)
		defer cancel()
		grp.rows, grp.err = g.query(ctx, pool, grp.hashes)
	}()
	close(grp.done)
	g.mu.Lock()
	next := g.pending
	g.pending = nil
	if next == nil {
		g.reading--
	}
	g.mu.Unlock()
	if next != nil {
		go g.read(pool, next)
	}
}

func (g *groupReader) query(ctx context.Context, pool querier, hashes [][]byte) (map[string]*oauthRow, error) {
	n := 1
	for n < len(hashes) {
		n *= 2
	}
	args := make([]any, 0, n+1)
	args = append(args, g.kind)
	for i := range n {
		args = append(args, hashes[min(i, len(hashes)-1)])
	}
	res, err := pool.Query(ctx, groupReadSQL(n), args...)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	rows := make(map[string]*oauthRow, len(hashes))
	for res.Next() {
		var hash []byte
		r, err := scanOAuthRow(res, &hash)
		if err != nil {
			return nil, err
		}
		rows[string(hash)] = r
	}
	return rows, res.Err()
}
