package postgres_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/store/postgres"
)

// auditFixture is a migrated database with n sealed events and a signed
// checkpoint of the head, exported as an auditor would.
type auditFixture struct {
	pool  *pgxpool.Pool
	store *postgres.Store
	pub   ed25519.PublicKey
	cps   []audit.Checkpoint
}

func newAuditFixture(t *testing.T, n int) *auditFixture {
	t.Helper()
	ctx := context.Background()
	pool := testdb.Pool(t)
	s := postgres.New(pool)
	l := audit.NewLog(s, audit.Options{})
	for i := range n {
		e := audit.Event{Type: audit.TokenIssued, Subject: "555000000001", Client: "client-a", Detail: map[string]any{"i": i}}
		if err := l.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sl := &audit.Sealer{Store: s, Key: key}
	if _, err := sl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sl.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := audit.ExportCheckpoints(ctx, s, &buf); err != nil {
		t.Fatal(err)
	}
	cps, err := audit.ReadCheckpoints(&buf)
	if err != nil || len(cps) != 1 {
		t.Fatalf("checkpoints: %v %v", cps, err)
	}
	return &auditFixture{pool: pool, store: s, pub: key.Public().(ed25519.PublicKey), cps: cps}
}

func (f *auditFixture) exec(t *testing.T, sqls ...string) {
	t.Helper()
	for _, q := range sqls {
		if _, err := f.pool.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func (f *auditFixture) verify(t *testing.T, o audit.VerifyOptions) audit.Report {
	t.Helper()
	rep, err := audit.Verify(context.Background(), f.store, o)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

// TestAuditTamper: a direct SQL change made with superuser rights is
// reported at the first broken link.
func TestAuditTamper(t *testing.T) {
	tests := []struct {
		name    string
		sql     []string
		wantPos int64
		reason  string
	}{
		{"update subject", []string{`UPDATE audit_events SET subject = '555000000999' WHERE seq = 3`}, 3, "hash mismatch"},
		{"update detail", []string{`UPDATE audit_events SET detail = '{"i":99}' WHERE seq = 4`}, 4, "hash mismatch"},
		{"update time", []string{`UPDATE audit_events SET time = time + interval '1 second' WHERE seq = 2`}, 2, "hash mismatch"},
		{"delete record", []string{`DELETE FROM audit_events WHERE seq = 3`}, 3, "record missing"},
		{"delete record and seal", []string{`DELETE FROM audit_seals WHERE pos = 3`, `DELETE FROM audit_events WHERE seq = 3`}, 3, "seal missing"},
		{"reorder seals", []string{
			`UPDATE audit_seals SET pos = -1 WHERE pos = 3`,
			`UPDATE audit_seals SET pos = 3 WHERE pos = 4`,
			`UPDATE audit_seals SET pos = 4 WHERE pos = -1`}, 3, "hash mismatch"},
		{"point seal at another record", []string{
			`UPDATE audit_seals SET seq = -seq WHERE pos IN (3, 4)`,
			`UPDATE audit_seals SET seq = 4 WHERE pos = 3`,
			`UPDATE audit_seals SET seq = 3 WHERE pos = 4`}, 3, "hash mismatch"},
		{"forged hash", []string{`UPDATE audit_seals SET hash = sha256('x') WHERE pos = 5`}, 5, "hash mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newAuditFixture(t, 6)
			if rep := f.verify(t, audit.VerifyOptions{}); rep.Broken != nil || rep.Checked != 6 {
				t.Fatalf("before tamper: %+v", rep)
			}
			f.exec(t, tt.sql...)
			rep := f.verify(t, audit.VerifyOptions{})
			if rep.Broken == nil {
				t.Fatal("tamper not detected")
			}
			if rep.Broken.Pos != tt.wantPos || !strings.Contains(rep.Broken.Reason, tt.reason) {
				t.Fatalf("broken at %+v, want position %d (%s)", rep.Broken, tt.wantPos, tt.reason)
			}
			// A range ending at the tampered link finds it too.
			if rep := f.verify(t, audit.VerifyOptions{From: 1, To: tt.wantPos}); rep.Broken == nil || rep.Broken.Pos != tt.wantPos {
				t.Fatalf("range ending at the tamper: %+v", rep.Broken)
			}
			// A range before the tamper still verifies.
			if rep := f.verify(t, audit.VerifyOptions{From: 1, To: tt.wantPos - 1}); rep.Broken != nil {
				t.Fatalf("range before tamper: %v", rep.Broken)
			}
		})
	}
}

// TestAuditRehashCaughtByCheckpoint: a superuser who rewrites a record and
// re-hashes the rest of the chain passes a plain verify, but not one
// against a checkpoint exported before the rewrite. Truncating the chain
// below an exported checkpoint is caught too.
func TestAuditRehashCaughtByCheckpoint(t *testing.T) {
	ctx := context.Background()
	t.Run("rehash", func(t *testing.T) {
		t.Parallel()
		f := newAuditFixture(t, 6)
		f.exec(t, `UPDATE audit_events SET subject = '555000000999' WHERE seq = 3`)
		links, err := f.store.SealedAudit(ctx, 1, 100)
		if err != nil {
			t.Fatal(err)
		}
		prev := audit.GenesisHash
		for _, l := range links {
			prev = audit.NextHash(prev, l.Event)
			if _, err := f.pool.Exec(ctx, `UPDATE audit_seals SET hash = $1 WHERE pos = $2`, prev, l.Pos); err != nil {
				t.Fatal(err)
			}
		}
		if rep := f.verify(t, audit.VerifyOptions{}); rep.Broken != nil {
			t.Fatalf("re-hashed chain should pass a plain verify (that is why checkpoints exist): %v", rep.Broken)
		}
		rep := f.verify(t, audit.VerifyOptions{Checkpoints: f.cps, PublicKey: f.pub})
		if rep.Broken == nil || rep.Broken.Pos != 6 || !strings.Contains(rep.Broken.Reason, "rewritten") {
			t.Fatalf("want break at checkpoint position 6, got %+v", rep.Broken)
		}
	})
	t.Run("truncate", func(t *testing.T) {
		t.Parallel()
		f := newAuditFixture(t, 6)
		f.exec(t, `DELETE FROM audit_seals WHERE pos >= 5`, `DELETE FROM audit_events WHERE seq >= 5`)
		rep := f.verify(t, audit.VerifyOptions{Checkpoints: f.cps, PublicKey: f.pub})
		if rep.Broken == nil || rep.Broken.Pos != 6 || !strings.Contains(rep.Broken.Reason, "truncated") {
			t.Fatalf("want truncation caught at 6, got %+v", rep.Broken)
		}
	})
	t.Run("forged checkpoint", func(t *testing.T) {
		t.Parallel()
		f := newAuditFixture(t, 3)
		cp := f.cps[0]
		cp.Hash = bytes.Repeat([]byte{1}, 32)
		rep := f.verify(t, audit.VerifyOptions{Checkpoints: []audit.Checkpoint{cp}, PublicKey: f.pub})
		if rep.Broken == nil || !strings.Contains(rep.Broken.Reason, "signature") {
			t.Fatalf("forged checkpoint accepted: %+v", rep)
		}
	})
}

// TestAuditLateCommit: a record whose transaction commits after later
// records were committed is sealed (never skipped), nothing committed after
// it is sealed while it is open, and a rolled-back record leaves a gap the
// chain does not notice.
func TestAuditLateCommit(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t)
	s := postgres.New(pool)
	l := audit.NewLog(s, audit.Options{})
	sl := &audit.Sealer{Store: s}

	// A BeginTX transaction's insert waits for its next statement
	// (txqueue.go); a read in it sends the insert now.
	send := func(txCtx context.Context) {
		t.Helper()
		if _, err := s.QueryAudit(txCtx, audit.Query{Limit: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// Open transaction: takes seq 1 and holds it.
	txCtx, err := s.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Rollback(txCtx) })
	if err := l.Record(txCtx, audit.Event{Type: audit.TokenIssued, Subject: "late"}); err != nil {
		t.Fatal(err)
	}
	send(txCtx)
	for range 3 {
		if err := l.Record(ctx, audit.Event{Type: audit.TokenIssued, Subject: "early"}); err != nil {
			t.Fatal(err)
		}
	}
	// Rolled back: seq 5 is never committed.
	rbCtx, err := s.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Record(rbCtx, audit.Event{Type: audit.TokenIssued, Subject: "rolled-back"}); err != nil {
		t.Fatal(err)
	}
	send(rbCtx)
	if err := s.Rollback(rbCtx); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b, err := s.SealAudit(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		if b.Count != 0 {
			t.Fatalf("sealed %d records while an older transaction was open", b.Count)
		}
	}
	if err := s.Commit(txCtx); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(ctx, audit.Event{Type: audit.TokenIssued, Subject: "after"}); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := sl.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	links, err := s.SealedAudit(ctx, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	var subjects []string
	for _, ln := range links {
		seqs = append(seqs, ln.Seq)
		subjects = append(subjects, ln.Event.Subject)
	}
	if got, want := strings.Join(subjects, ","), "late,early,early,early,after"; got != want {
		t.Fatalf("chain order %s (seqs %v), want %s", got, seqs, want)
	}
	if seqs[0] != 1 || seqs[4] != 6 {
		t.Fatalf("seqs %v, want 1..4 then 6 (5 rolled back)", seqs)
	}
	if rep, err := audit.Verify(ctx, s, audit.VerifyOptions{}); err != nil || rep.Broken != nil || rep.Checked != 5 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestAuditAppRoleAppendOnly: the serving role may insert and read the
// audit tables (record, seal, checkpoint) but never update, delete or
// truncate them.
func TestAuditAppRoleAppendOnly(t *testing.T) {
	ctx := context.Background()
	u := testdb.URL(t)
	owner, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	role := "nhsid_app_test_" + hex.EncodeToString(b)
	if _, err := owner.Exec(ctx, `CREATE ROLE `+role+` LOGIN`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Runs before the database is dropped (registered later).
		_, _ = owner.Exec(context.Background(), `DROP OWNED BY `+role)
		if _, err := owner.Exec(context.Background(), `DROP ROLE `+role); err != nil {
			t.Errorf("drop role: %v", err)
		}
	})
	if err := postgres.GrantAppRole(ctx, owner, role); err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	pu.User = url.User(role)
	app, err := pgxpool.New(ctx, pu.String())
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()

	s := postgres.New(app)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	l := audit.NewLog(s, audit.Options{})
	for range 3 {
		if err := l.Record(ctx, audit.Event{Type: audit.SigninSuccess, Subject: "555000000001"}); err != nil {
			t.Fatalf("record as app role: %v", err)
		}
	}
	sl := &audit.Sealer{Store: s, Key: key}
	if _, err := sl.Flush(ctx); err != nil {
		t.Fatalf("seal as app role: %v", err)
	}
	if _, err := sl.Checkpoint(ctx); err != nil {
		t.Fatalf("checkpoint as app role: %v", err)
	}
	if _, err := app.Exec(ctx, `UPDATE people SET title = title WHERE false`); err != nil {
		t.Fatalf("app role cannot update an ordinary table: %v", err)
	}
	refused := []string{
		`UPDATE audit_events SET subject = 'x' WHERE seq = 1`,
		`DELETE FROM audit_events WHERE seq = 1`,
		`TRUNCATE audit_events`,
		`UPDATE audit_seals SET hash = 'x' WHERE pos = 1`,
		`DELETE FROM audit_seals`,
		`DELETE FROM audit_seal_batches`,
		`UPDATE audit_checkpoints SET hash = 'x'`,
		`DELETE FROM audit_checkpoints`,
	}
	for _, q := range refused {
		t.Run(q, func(t *testing.T) {
			_, err := app.Exec(ctx, q)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Fatalf("%s as app role: got %v, want insufficient_privilege", q, err)
			}
		})
	}
	if rep, err := audit.Verify(ctx, s, audit.VerifyOptions{}); err != nil || rep.Broken != nil || rep.Checked != 3 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestSealAllAcrossTransactions: records committed several to a
// transaction (as grouped sends commit them) make sealing rounds stop
// below their limit, at transaction boundaries; the sealer still seals
// them all. (A transaction open elsewhere in the cluster can hold the
// watermark back for a moment, so this retries for up to 10 s; before
// the fix, SealAll stopped after one round of 9 records, and the
// sealer's rounds come once a second. TestSealAllFollowsMore in package
// audit checks SealAll's rule itself.)
func TestSealAllAcrossTransactions(t *testing.T) {
	ctx := context.Background()
	s := postgres.New(testdb.Pool(t))
	const txs, per = 40, 3
	for i := range txs {
		evs := make([]audit.Event, per)
		for j := range evs {
			evs[j] = audit.Event{Type: audit.TokenIssued, Outcome: audit.Success, Client: "client-a",
				Detail: map[string]any{"i": i, "j": j}}
		}
		if _, err := s.AppendAudit(ctx, evs); err != nil { // one statement, one transaction
			t.Fatal(err)
		}
	}
	sealer := &audit.Sealer{Store: s, BatchSize: 10}
	sealed, calls := 0, 0
	for deadline := time.Now().Add(10 * time.Second); sealed < txs*per && time.Now().Before(deadline); calls++ {
		n, err := sealer.SealAll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sealed += n
		if n == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if sealed != txs*per {
		t.Fatalf("sealed %d of %d records in %d calls", sealed, txs*per, calls)
	}
	h, err := s.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Pos != txs*per || h.Unsealed != 0 {
		t.Fatalf("head at %d with %d unsealed, want %d and 0", h.Pos, h.Unsealed, txs*per)
	}
}
