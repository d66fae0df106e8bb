package postgres

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/policy"
)

func (s *Store) countRows(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("count: %v", err)
	}
	return n
}

// TestPipelineCommitsTogether: queued writes are invisible until sent, and
// then the token row and its audit event are there together.
func TestPipelineCommitsTogether(t *testing.T) {
	s, req := oauthTestStore(t)
	bg := context.Background()
	ctx, err := s.BeginPipeline(bg)
	if err != nil {
		t.Fatalf("BeginPipeline: %v", err)
	}
	if err := s.CreateAccessTokenSession(ctx, "piped-at", req); err != nil {
		t.Fatalf("create in pipeline: %v", err)
	}
	out, err := s.AppendAudit(ctx, []audit.Event{{Type: audit.TokenIssued, Outcome: audit.Success, Client: "tx-client"}})
	if err != nil || len(out) != 1 || out[0].Seq != 0 {
		t.Fatalf("AppendAudit in pipeline = %+v, %v; want one event without a seq", out, err)
	}
	if _, err := s.GetAccessTokenSession(bg, "piped-at", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Fatalf("token visible before the pipeline was sent: %v", err)
	}
	if n := s.countRows(t, `SELECT count(*) FROM audit_events WHERE client = 'tx-client'`); n != 0 {
		t.Fatalf("%d audit events before send, want 0", n)
	}
	if err := s.SendPipeline(ctx); err != nil {
		t.Fatalf("SendPipeline: %v", err)
	}
	if _, err := s.GetAccessTokenSession(bg, "piped-at", openid.NewDefaultSession()); err != nil {
		t.Fatalf("token after send: %v", err)
	}
	if n := s.countRows(t, `SELECT count(*) FROM audit_events WHERE client = 'tx-client' AND type = 'token.issued'`); n != 1 {
		t.Fatalf("%d audit events after send, want 1", n)
	}
	if err := s.SendPipeline(ctx); err == nil {
		t.Fatal("a second SendPipeline succeeded")
	}
	if err := s.CreateAccessTokenSession(ctx, "late", req); err == nil {
		t.Fatal("a write after send was accepted")
	}
}

// TestPipelineAllOrNothing: when one queued write fails, none commits.
func TestPipelineAllOrNothing(t *testing.T) {
	s, req := oauthTestStore(t)
	bg := context.Background()
	if err := s.CreateAccessTokenSession(bg, "taken", req); err != nil {
		t.Fatalf("create: %v", err)
	}
	ctx, err := s.BeginPipeline(bg)
	if err != nil {
		t.Fatalf("BeginPipeline: %v", err)
	}
	if err := s.CreateAccessTokenSession(ctx, "fresh", req); err != nil {
		t.Fatalf("queue fresh: %v", err)
	}
	if _, err := s.AppendAudit(ctx, []audit.Event{{Type: audit.TokenIssued, Outcome: audit.Success, Client: "tx-client"}}); err != nil {
		t.Fatalf("queue audit: %v", err)
	}
	if err := s.CreateAccessTokenSession(ctx, "taken", req); err != nil { // duplicate key, found at send
		t.Fatalf("queue duplicate: %v", err)
	}
	if err := s.SendPipeline(ctx); err == nil {
		t.Fatal("SendPipeline with a duplicate key succeeded")
	}
	if _, err := s.GetAccessTokenSession(bg, "fresh", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Fatalf("the write before the failure committed: %v", err)
	}
	if n := s.countRows(t, `SELECT count(*) FROM audit_events WHERE client = 'tx-client'`); n != 0 {
		t.Fatalf("%d audit events committed from a failed pipeline, want 0", n)
	}
}

// TestPipelineRefusesReads: a read, a transaction or a nested pipeline in
// a pipelined context fails clearly instead of seeing no data.
func TestPipelineRefusesReads(t *testing.T) {
	s, req := oauthTestStore(t)
	bg := context.Background()
	if err := s.CreateAccessTokenSession(bg, "at", req); err != nil {
		t.Fatalf("create: %v", err)
	}
	ctx, err := s.BeginPipeline(bg)
	if err != nil {
		t.Fatalf("BeginPipeline: %v", err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "at", openid.NewDefaultSession()); !errors.Is(err, errPipelineAnswer) {
		t.Errorf("read in pipeline: %v, want errPipelineAnswer", err)
	}
	if err := s.SetClientAssertionJWT(ctx, "jti", req.GetRequestedAt()); !errors.Is(err, errPipelineAnswer) {
		t.Errorf("a write whose row count matters, in a pipeline: %v, want errPipelineAnswer", err)
	}
	if err := s.RotateRefreshToken(ctx, req.GetID(), "rt"); !errors.Is(err, errPipelineAnswer) {
		t.Errorf("a call that needs its own transaction in a pipeline: %v, want errPipelineAnswer", err)
	}
	if _, err := s.UpdateRiskProfile(ctx, "555000000001", func(*policy.RiskProfile) error { return nil }); !errors.Is(err, errPipelineAnswer) {
		t.Errorf("inTx in a pipeline: %v, want errPipelineAnswer", err)
	}
	if _, err := s.BeginTX(ctx); err == nil {
		t.Error("BeginTX inside a pipeline succeeded")
	}
	if _, err := s.BeginPipeline(ctx); err == nil {
		t.Error("nested BeginPipeline succeeded")
	}
	txCtx, err := s.BeginTX(bg)
	if err != nil {
		t.Fatalf("BeginTX: %v", err)
	}
	defer s.Rollback(txCtx)
	if _, err := s.BeginPipeline(txCtx); err == nil {
		t.Error("BeginPipeline inside a transaction succeeded")
	}
	if err := s.SendPipeline(bg); err == nil {
		t.Error("SendPipeline without a pipeline succeeded")
	}
}

// TestPipelineGroupFailureIsolated: pipelines sent together share one
// transaction; when one of them fails, the others are sent again on their
// own and commit, and only the failing one reports the failure.
func TestPipelineGroupFailureIsolated(t *testing.T) {
	s, req := oauthTestStore(t)
	bg := context.Background()
	if err := s.CreateAccessTokenSession(bg, "taken", req); err != nil {
		t.Fatalf("create: %v", err)
	}
	queue := func(sigs ...string) *pipeline {
		ctx, err := s.BeginPipeline(bg)
		if err != nil {
			t.Fatalf("BeginPipeline: %v", err)
		}
		for _, sig := range sigs {
			if err := s.CreateAccessTokenSession(ctx, sig, req); err != nil {
				t.Fatalf("queue %s: %v", sig, err)
			}
		}
		p, _ := pipelineOf(ctx)
		p.sent = true
		return p
	}
	g := &pipeGroup{members: []*pipeline{queue("a1", "a2"), queue("b1", "taken"), queue("c1")}, done: make(chan struct{})}
	var ps pipeSender
	ps.flushing = true
	ps.flush(s.pool, g)
	if g.errs[0] != nil || g.errs[2] != nil || g.errs[1] == nil {
		t.Fatalf("errors %v: want only the second pipeline to fail", g.errs)
	}
	for sig, want := range map[string]bool{"a1": true, "a2": true, "c1": true, "b1": false} {
		_, err := s.GetAccessTokenSession(bg, sig, openid.NewDefaultSession())
		if got := err == nil; got != want {
			t.Errorf("token %s committed = %v (%v), want %v", sig, got, err, want)
		}
	}
	if ps.flushing {
		t.Error("sender still flushing after its last group")
	}
}

// TestPipelineConcurrentSends: many requests sending at once all commit,
// whichever group they land in.
func TestPipelineConcurrentSends(t *testing.T) {
	s, req := oauthTestStore(t)
	bg := context.Background()
	const n = 40
	errs := make(chan error, n)
	for i := range n {
		go func() {
			ctx, err := s.BeginPipeline(bg)
			if err == nil {
				err = s.CreateAccessTokenSession(ctx, fmt.Sprintf("con-%d", i), req)
			}
			if err == nil {
				_, err = s.AppendAudit(ctx, []audit.Event{{Type: audit.TokenIssued, Outcome: audit.Success, Client: "group-client"}})
			}
			if err == nil {
				err = s.SendPipeline(ctx)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	if got := s.countRows(t, `SELECT count(*) FROM oauth_tokens WHERE kind = 'access'`); got != n {
		t.Errorf("%d token rows, want %d", got, n)
	}
	if got := s.countRows(t, `SELECT count(*) FROM audit_events WHERE client = 'group-client'`); got != n {
		t.Errorf("%d audit events, want %d", got, n)
	}
}

// TestMergeWrites: pipelines of one shape go position by position, and
// runs of row inserts with one head become multi-row INSERTs of
// power-of-two sizes with the rows in order; other writes pass through.
func TestMergeWrites(t *testing.T) {
	ins := func(head string, rows ...int) queuedWrite {
		var args []any
		for _, r := range rows {
			args = append(args, r, -r)
		}
		return queuedWrite{head: head, width: 2, args: args}
	}
	exec := func(sql string, arg int) queuedWrite { return queuedWrite{sql: sql, args: []any{arg}} }
	pipe := func(ws ...queuedWrite) *pipeline { return &pipeline{writes: ws} }
	const a, b = "INSERT INTO a (x, y) VALUES ", "INSERT INTO b (x, y) VALUES "
	type stmt struct {
		sql  string
		args string
	}
	render := func(ws []queuedWrite) []stmt {
		var out []stmt
		for _, w := range ws {
			out = append(out, stmt{w.sql, fmt.Sprint(w.args)})
		}
		return out
	}
	tests := []struct {
		name string
		ps   []*pipeline
		want []stmt
	}{
		{"one shape", []*pipeline{
			pipe(ins(a, 1), exec("UPDATE x", 1), ins(b, 1, 2)),
			pipe(ins(a, 2), exec("UPDATE x", 2), ins(b, 3, 4)),
			pipe(ins(a, 3), exec("UPDATE x", 3), ins(b, 5, 6)),
		}, []stmt{
			{a + "($1,$2),($3,$4),($5,$6)", "[1 -1 2 -2 3 -3]"},
			{"UPDATE x", "[1]"}, {"UPDATE x", "[2]"}, {"UPDATE x", "[3]"},
			{b + "($1,$2),($3,$4),($5,$6),($7,$8),($9,$10),($11,$12)", "[1 -1 2 -2 3 -3 4 -4 5 -5 6 -6]"},
		}},
		{"shapes differ: pipeline by pipeline, like inserts of a run merged", []*pipeline{
			pipe(ins(a, 1), ins(a, 2)),
			pipe(ins(b, 3), ins(a, 4)),
		}, []stmt{
			{a + "($1,$2),($3,$4),($5,$6)", "[1 -1 2 -2 4 -4]"},
			{b + "($1,$2)", "[3 -3]"},
		}},
		{"one request: inserts merge across other inserts, never across another write", []*pipeline{
			pipe(ins(a, 1), ins(b, 2), ins(a, 3), exec("UPDATE x", 1), ins(a, 4), ins(b, 5), ins(b, 6)),
		}, []stmt{
			{a + "($1,$2),($3,$4)", "[1 -1 3 -3]"},
			{b + "($1,$2)", "[2 -2]"},
			{"UPDATE x", "[1]"},
			{a + "($1,$2)", "[4 -4]"},
			{b + "($1,$2),($3,$4)", "[5 -5 6 -6]"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := render(mergeWrites(orderWrites(tt.ps)))
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
	// A long run is cut at maxInsertRows, and what is longer than
	// exactInsertRows into power-of-two sizes.
	for rows, want := range map[int][]int{
		3:                    {3},
		exactInsertRows:      {exactInsertRows},
		exactInsertRows + 5:  {exactInsertRows, 5},
		maxInsertRows - 1:    {32, 16, 8, 7},
		maxInsertRows + 3:    {maxInsertRows, 3},
		2*maxInsertRows + 11: {maxInsertRows, maxInsertRows, exactInsertRows, 3},
	} {
		var long []queuedWrite
		for i := range rows {
			long = append(long, ins(a, i))
		}
		var sizes []int
		for _, w := range mergeWrites(long) {
			sizes = append(sizes, len(w.args)/2)
		}
		if fmt.Sprint(sizes) != fmt.Sprint(want) {
			t.Errorf("%d rows: statement sizes %v, want %v", rows, sizes, want)
		}
	}
}

// TestPipelineMergedGroup: a group larger than one merged INSERT commits
// every row with its own values (no row takes another's arguments).
func TestPipelineMergedGroup(t *testing.T) {
	s, req := oauthTestStore(t)
	bg := context.Background()
	const n = maxInsertRows + 6
	g := &pipeGroup{done: make(chan struct{})}
	for i := range n {
		ctx, err := s.BeginPipeline(bg)
		if err != nil {
			t.Fatalf("BeginPipeline: %v", err)
		}
		r := req.Sanitize(nil).(*fosite.Request)
		r.ID = fmt.Sprintf("request-%d", i)
		r.Session = req.Session
		if err := s.CreateAccessTokenSession(ctx, fmt.Sprintf("merged-%d", i), r); err != nil {
			t.Fatalf("queue: %v", err)
		}
		if _, err := s.AppendAudit(ctx, []audit.Event{{Type: audit.TokenIssued, Outcome: audit.Success,
			Client: "merge-client", RequestID: r.ID}}); err != nil {
			t.Fatalf("queue audit: %v", err)
		}
		p, _ := pipelineOf(ctx)
		p.sent = true
		g.members = append(g.members, p)
	}
	var ps pipeSender
	ps.flushing = true
	ps.flush(s.pool, g)
	for i, err := range g.errs {
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
	}
	for i := range n {
		got, err := s.GetAccessTokenSession(bg, fmt.Sprintf("merged-%d", i), openid.NewDefaultSession())
		if err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		if want := fmt.Sprintf("request-%d", i); got.GetID() != want {
			t.Fatalf("token %d has request %q, want %q", i, got.GetID(), want)
		}
	}
	if got := s.countRows(t, `SELECT count(DISTINCT request_id) FROM audit_events WHERE client = 'merge-client'`); got != n {
		t.Fatalf("%d distinct audited requests, want %d", got, n)
	}
}

// panicValuer panics when pgx encodes it, as a driver or codec bug would.
type panicValuer struct{}

func (panicValuer) Value() (driver.Value, error) { panic("codec bug") }

// TestPipelinePanic: a panic while a grouped send encodes or runs fails
// that pipeline with an error instead of ending the process, and the
// sender goes on working.
func TestPipelinePanic(t *testing.T) {
	s := New(testdb.Pool(t))
	ctx, err := s.BeginPipeline(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.execNoAnswer(ctx, `SELECT $1::text`, panicValuer{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SendPipeline(ctx); err == nil || !strings.Contains(err.Error(), "panic") {
		t.Fatalf("send with a panicking argument: %v", err)
	}
	ctx, _ = s.BeginPipeline(context.Background())
	if err := s.execNoAnswer(ctx, `SELECT $1::text`, "fine"); err != nil {
		t.Fatal(err)
	}
	if err := s.SendPipeline(ctx); err != nil {
		t.Fatalf("send after the panic: %v", err)
	}
}
