package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/nhsid/nhsid/idp"
)

// countingQuerier counts the statements sent through it.
type countingQuerier struct {
	querier
	mu sync.Mutex
	n  int
}

func (c *countingQuerier) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.querier.Query(ctx, sql, args...)
}

// TestGroupRead: look-ups that arrive while reads are in flight go
// together in one statement, and each gets its own row, or not found
// (an odd number of keys, so the IN list is padded).
func TestGroupRead(t *testing.T) {
	s, req := oauthTestStore(t)
	ctx := context.Background()
	const n = 11
	for i := range n {
		if i%3 == 2 {
			continue // a token that does not exist
		}
		r := req.Sanitize(nil).(*fosite.Request)
		r.ID = fmt.Sprint("req-", i)
		if err := s.CreateAccessTokenSession(ctx, fmt.Sprint("sig-", i), r); err != nil {
			t.Fatal(err)
		}
	}
	g := &groupReader{kind: idp.TokenKindAccess}
	g.reading = groupReadsInFlight // as if that many reads were in flight
	db := &countingQuerier{querier: s.pool}
	type result struct {
		r   *oauthRow
		err error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, grouped, err := g.get(ctx, db, oauthHash(fmt.Sprint("sig-", i)))
			if !grouped {
				err = errors.New("not grouped")
			}
			results[i] = result{r, err}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		joined := 0
		if g.pending != nil {
			joined = len(g.pending.hashes)
		}
		g.mu.Unlock()
		if joined == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d look-ups joined the group", joined, n)
		}
		time.Sleep(time.Millisecond)
	}
	// One of the reads in flight ends and takes over the gathered group.
	g.mu.Lock()
	next := g.pending
	g.pending = nil
	g.mu.Unlock()
	g.read(db, next)
	wg.Wait()
	if db.n != 1 {
		t.Fatalf("%d statements for %d look-ups, want 1", db.n, n)
	}
	for i, res := range results {
		if i%3 == 2 {
			if !errors.Is(res.err, pgx.ErrNoRows) {
				t.Errorf("look-up %d of a missing token: %v, %v", i, res.r, res.err)
			}
			continue
		}
		if res.err != nil || res.r.requestID != fmt.Sprint("req-", i) {
			t.Errorf("look-up %d: %+v, %v", i, res.r, res.err)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.reading != groupReadsInFlight-1 || g.pending != nil {
		t.Errorf("after the read: %d in flight, pending %v", g.reading, g.pending)
	}
}

// TestGroupReadFull: a look-up that finds the gathering group full reads
// on its own, and GetAccessTokenSession still answers it.
func TestGroupReadFull(t *testing.T) {
	s, req := oauthTestStore(t)
	ctx := context.Background()
	if err := s.CreateAccessTokenSession(ctx, "sig", req); err != nil {
		t.Fatal(err)
	}
	g := s.reads[idp.TokenKindAccess]
	g.mu.Lock()
	g.reading = groupReadsInFlight
	g.pending = &readGroup{hashes: make([][]byte, groupReadMax), done: make(chan struct{})}
	g.mu.Unlock()
	if _, grouped, err := g.get(ctx, s.pool, oauthHash("sig")); grouped || err != nil {
		t.Fatalf("full group: grouped %v, err %v", grouped, err)
	}
	got, err := s.GetAccessTokenSession(ctx, "sig", openid.NewDefaultSession())
	if err != nil || got.GetID() != req.ID {
		t.Fatalf("GetAccessTokenSession beside a full group: %v, %v", got, err)
	}
}

// TestGroupReadSQL: the IN list has one parameter per key after the kind.
func TestGroupReadSQL(t *testing.T) {
	for n, want := range map[int]string{1: "IN ($2)", 4: "IN ($2, $3, $4, $5)"} {
		if sql := groupReadSQL(n); !strings.HasSuffix(sql, want) {
			t.Errorf("groupReadSQL(%d) = %q, want it to end %q", n, sql, want)
		}
	}
}

// panicQuerier panics on every query.
type panicQuerier struct{ querier }

func (panicQuerier) Query(context.Context, string, ...any) (pgx.Rows, error) { panic("driver bug") }

// TestGroupReadPanic: a panic while reading fails that group's look-ups
// with an error and leaves the reader usable.
func TestGroupReadPanic(t *testing.T) {
	s, req := oauthTestStore(t)
	ctx := context.Background()
	if err := s.CreateAccessTokenSession(ctx, "sig", req); err != nil {
		t.Fatal(err)
	}
	g := &groupReader{kind: idp.TokenKindAccess}
	if _, grouped, err := g.get(ctx, panicQuerier{}, oauthHash("sig")); !grouped || err == nil || !strings.Contains(err.Error(), "panic") {
		t.Fatalf("look-up through a panicking driver: grouped %v, err %v", grouped, err)
	}
	if r, _, err := g.get(ctx, s.pool, oauthHash("sig")); err != nil || r.requestID != req.ID {
		t.Fatalf("look-up after the panic: %+v, %v", r, err)
	}
	if g.reading != 0 {
		t.Fatalf("%d reads still counted in flight", g.reading)
	}
}
