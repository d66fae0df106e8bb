package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/nhsid/nhsid/audit"
)

// TestQueuedTx: in a BeginTX transaction, row inserts wait until the next
// statement: the transaction reads its own writes, a commit sends and
// commits them (tokens and audit record together), a rollback drops them,
// and a waiting insert that fails fails the commit with nothing committed.
func TestQueuedTx(t *testing.T) {
	s, req := oauthTestStore(t)
	bg := context.Background()
	begin := func() (context.Context, *queuedTx) {
		t.Helper()
		ctx, err := s.BeginTX(bg)
		if err != nil {
			t.Fatalf("BeginTX: %v", err)
		}
		t.Cleanup(func() { _ = s.Rollback(ctx) })
		q, ok := queuedTxOf(ctx)
		if !ok {
			t.Fatal("BeginTX carries no queued transaction")
		}
		return ctx, q
	}
	visible := func(sig string) bool {
		_, err := s.GetAccessTokenSession(bg, sig, openid.NewDefaultSession())
		return err == nil
	}

	ctx, q := begin()
	for _, sig := range []string{"q-1", "q-2"} {
		if err := s.CreateAccessTokenSession(ctx, sig, req); err != nil {
			t.Fatalf("create %s: %v", sig, err)
		}
	}
	if _, err := s.AppendAudit(ctx, []audit.Event{{Type: audit.TokenIssued, Outcome: audit.Success, Client: "queued-client"}}); err != nil {
		t.Fatalf("audit: %v", err)
	}
	if len(q.queued) != 3 {
		t.Fatalf("%d inserts waiting, want 3", len(q.queued))
	}
	if _, err := s.GetAccessTokenSession(ctx, "q-1", openid.NewDefaultSession()); err != nil {
		t.Fatalf("read own write: %v", err)
	}
	if len(q.queued) != 0 {
		t.Fatalf("%d inserts still waiting after a read", len(q.queued))
	}
	if err := s.CreateAccessTokenSession(ctx, "q-3", req); err != nil {
		t.Fatalf("create q-3: %v", err)
	}
	if visible("q-1") || visible("q-3") {
		t.Fatal("tokens visible outside the transaction before commit")
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	for _, sig := range []string{"q-1", "q-2", "q-3"} {
		if !visible(sig) {
			t.Errorf("%s not committed", sig)
		}
	}
	if n := s.countRows(t, `SELECT count(*) FROM audit_events WHERE client = 'queued-client'`); n != 1 {
		t.Errorf("%d audit records committed, want 1", n)
	}
	if err := s.CreateAccessTokenSession(ctx, "after-commit", req); err == nil {
		t.Error("an insert after the commit was accepted (and would be lost)")
	}

	ctx, _ = begin()
	if err := s.CreateAccessTokenSession(ctx, "rolled", req); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := s.Rollback(ctx); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if visible("rolled") {
		t.Error("a rolled-back insert was committed")
	}

	ctx, _ = begin()
	for _, sig := range []string{"fresh", "q-1"} { // q-1 exists: the insert fails
		if err := s.CreateAccessTokenSession(ctx, sig, req); err != nil {
			t.Fatalf("create %s: %v", sig, err)
		}
	}
	if err := s.Commit(ctx); err == nil {
		t.Fatal("commit with a failing insert succeeded")
	}
	if visible("fresh") {
		t.Error("an insert of a failed transaction was committed")
	}
	if _, err := s.GetAccessTokenSession(bg, "q-1", openid.NewDefaultSession()); errors.Is(err, fosite.ErrNotFound) {
		t.Error("the existing token went")
	}
}

// TestQueuedTxConnection: BEGIN waits for the transaction's first
// statement, a transaction that sent nothing ends without one, every end
// (commit, rollback, a failed commit) gives the connection back to the
// pool in a usable state, and statements pgx sends by the simple protocol
// (several in one string) still work inside.
func TestQueuedTxConnection(t *testing.T) {
	s, req := oauthTestStore(t)
	bg := context.Background()
	acquired := func(what string) {
		t.Helper()
		if n := s.pool.Stat().AcquiredConns(); n != 0 {
			t.Fatalf("%s: %d connections still acquired", what, n)
		}
	}
	begin := func() (context.Context, *queuedTx) {
		t.Helper()
		ctx, err := s.BeginTX(bg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Rollback(ctx) })
		q, _ := queuedTxOf(ctx)
		return ctx, q
	}

	ctx, q := begin()
	if _, err := s.AppendAudit(ctx, []audit.Event{{Type: audit.TokenIssued, Outcome: audit.Success, Client: "queued-client"}}); err != nil {
		t.Fatal(err)
	}
	if q.begun || len(q.queued) != 1 {
		t.Fatalf("begun %v with %d waiting: BEGIN sent before any statement", q.begun, len(q.queued))
	}
	if err := s.CreateAccessTokenSession(ctx, "c-1", req); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Exec(ctx, `SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off`); err != nil {
		t.Fatalf("simple-protocol statements: %v", err)
	}
	var setting string
	if err := q.QueryRow(ctx, `SELECT current_setting($1)`, "enable_sort").Scan(&setting); err != nil || setting != "off" {
		t.Fatalf("SET LOCAL inside the transaction: %q, %v", setting, err)
	}
	if !q.begun || len(q.queued) != 0 {
		t.Fatalf("begun %v, %d waiting after statements", q.begun, len(q.queued))
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	acquired("after a commit")
	if err := s.Commit(ctx); err == nil {
		t.Fatal("a second commit succeeded")
	}

	ctx, q = begin()
	if err := s.Commit(ctx); err != nil {
		t.Fatalf("commit of an empty transaction: %v", err)
	}
	if q.begun {
		t.Fatal("an empty transaction sent BEGIN")
	}
	acquired("after an empty commit")

	ctx, _ = begin()
	if _, err := s.GetAccessTokenSession(ctx, "c-1", openid.NewDefaultSession()); err != nil {
		t.Fatal(err)
	}
	if err := s.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	acquired("after a rollback")

	ctx, _ = begin()
	if err := s.CreateAccessTokenSession(ctx, "c-1", req); err != nil { // exists: fails at commit
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err == nil {
		t.Fatal("commit with a failing insert succeeded")
	}
	acquired("after a failed commit")
	for range 3 { // whatever connection the pool hands out works
		if _, err := s.GetAccessTokenSession(bg, "c-1", openid.NewDefaultSession()); err != nil {
			t.Fatalf("after a failed commit: %v", err)
		}
	}
	var status string
	if err := s.pool.QueryRow(bg, `SELECT current_setting('enable_sort')`).Scan(&status); err != nil || status != "on" {
		t.Fatalf("a pooled connection kept the transaction's settings: %q, %v", status, err)
	}
}
