package postgres_test

import (
	"bytes"
	"context"
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

// retentionFixture is a migrated database with old and recent sealed
// events, an owner pool, and stores connected as a retention role and as
// the serving (app) role.
type retentionFixture struct {
	owner     *pgxpool.Pool
	ownerS    *postgres.Store
	retention *postgres.Store
	app       *postgres.Store
}

var cut = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newRole(t *testing.T, owner *pgxpool.Pool, u, prefix string, grant func(context.Context, *pgxpool.Pool, string) error) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	role := prefix + hex.EncodeToString(b)
	if _, err := owner.Exec(ctx, `CREATE ROLE `+role+` LOGIN`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = owner.Exec(context.Background(), `DROP OWNED BY `+role)
		if _, err := owner.Exec(context.Background(), `DROP ROLE `+role); err != nil {
			t.Errorf("drop role: %v", err)
		}
	})
	if err := grant(ctx, owner, role); err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	pu.User = url.User(role)
	p, err := pgxpool.New(ctx, pu.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// newRetentionFixture records old events (before cut) then recent ones,
// and seals them.
func newRetentionFixture(t *testing.T, old, recent int) *retentionFixture {
	t.Helper()
	ctx := context.Background()
	u := testdb.URL(t)
	owner, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	f := &retentionFixture{owner: owner, ownerS: postgres.New(owner)}
	f.app = postgres.New(newRole(t, owner, u, "nhsid_app_test_", postgres.GrantAppRole))
	f.retention = postgres.New(newRole(t, owner, u, "nhsid_ret_test_", postgres.GrantRetentionRole))
	l := audit.NewLog(f.app, audit.Options{})
	for i := range old + recent {
		at := cut.Add(-time.Duration(old-i) * time.Hour)
		if i >= old {
			at = cut.Add(time.Duration(i) * time.Hour)
		}
		if err := l.Record(ctx, audit.Event{Type: audit.SigninSuccess, Subject: "555000000001", Time: at, Detail: map[string]any{"i": i}}); err != nil {
			t.Fatal(err)
		}
	}
	f.seal(t)
	return f
}

func (f *retentionFixture) seal(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := (&audit.Sealer{Store: f.app}).Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func (f *retentionFixture) archive(t *testing.T, before time.Time) ([]byte, audit.ArchiveTrailer) {
	t.Helper()
	var buf bytes.Buffer
	tr, err := audit.Archive(context.Background(), f.app, before, &buf)
	if err != nil {
		t.Fatalf("archive: %v", err)
	}
	return buf.Bytes(), tr
}

func (f *retentionFixture) verify(t *testing.T) audit.Report {
	t.Helper()
	rep, err := audit.Verify(context.Background(), f.app, audit.VerifyOptions{})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

// TestAuditRetentionArchivePurgeVerify: the archive holds exactly the old
// records and verifies on its own; the purge (as the retention role)
// deletes them and records retention.deleted; the remaining chain
// verifies from the boundary; a second cycle continues from it; a tamper
// in the remaining range is still caught.
func TestAuditRetentionArchivePurgeVerify(t *testing.T) {
	ctx := context.Background()
	f := newRetentionFixture(t, 5, 4)
	data, tr := f.archive(t, cut)
	if tr.Count != 5 || tr.Boundary.Pos != 5 {
		t.Fatalf("archive trailer: %+v", tr)
	}
	links, rtr, err := audit.ReadArchive(bytes.NewReader(data))
	if err != nil || len(links) != 5 || rtr.Boundary.Pos != 5 {
		t.Fatalf("read archive: %d links %+v %v", len(links), rtr, err)
	}
	n, err := audit.Purge(ctx, f.retention, bytes.NewReader(data), cut, "operator:test", nil)
	if err != nil || n != 5 {
		t.Fatalf("purge: %d %v", n, err)
	}
	f.seal(t) // the retention.deleted event
	rep := f.verify(t)
	if rep.Broken != nil || rep.From != 6 || rep.Checked != 5 {
		t.Fatalf("verify after purge: %+v %+v", rep, rep.Broken)
	}
	p, err := f.app.QueryAudit(ctx, audit.Query{Types: []audit.Type{audit.RetentionDeleted}})
	if err != nil || len(p.Events) != 1 || p.Events[0].Actor != "operator:test" || p.Events[0].Detail["count"] != float64(5) {
		t.Fatalf("retention.deleted: %+v %v", p.Events, err)
	}
	b, err := f.app.AuditBoundary(ctx)
	if err != nil || b.Pos != 5 || !bytes.Equal(b.Hash, tr.Boundary.Hash) {
		t.Fatalf("boundary: %+v %v", b, err)
	}
	// The same archive again: already purged.
	if _, err := audit.Purge(ctx, f.retention, bytes.NewReader(data), cut, "operator:test", nil); err == nil {
		t.Fatal("second purge of the same archive succeeded")
	}

	// A second cycle, anchored on the first boundary: everything but the head.
	later := cut.Add(1000 * time.Hour)
	data2, tr2 := f.archive(t, later)
	if tr2.Count != 4 || tr2.Boundary.Pos != 9 || !bytes.Equal(tr2.Anchor, tr.Boundary.Hash) {
		t.Fatalf("second archive: %+v", tr2)
	}
	if _, err := audit.Purge(ctx, f.retention, bytes.NewReader(data2), later, "operator:test", nil); err != nil {
		t.Fatalf("second purge: %v", err)
	}
	f.seal(t)
	if rep := f.verify(t); rep.Broken != nil || rep.From != 10 || rep.Checked != 2 {
		t.Fatalf("verify after second purge: %+v %+v", rep, rep.Broken)
	}

	// A tamper in the remaining range.
	if _, err := f.owner.Exec(ctx, `UPDATE audit_events SET subject = 'x' WHERE seq = (SELECT seq FROM audit_seals WHERE pos = 10)`); err != nil {
		t.Fatal(err)
	}
	if rep := f.verify(t); rep.Broken == nil || rep.Broken.Pos != 10 {
		t.Fatalf("tamper after purge: %+v", rep.Broken)
	}
}

// TestAuditRetentionPurgeRefused: a purge is refused, deleting nothing,
// without an archive matching the database, and as the serving role.
func TestAuditRetentionPurgeRefused(t *testing.T) {
	ctx := context.Background()
	f := newRetentionFixture(t, 3, 2)
	data, tr := f.archive(t, cut)
	if tr.Count != 3 {
		t.Fatalf("archive: %+v", tr)
	}
	edited := bytes.Replace(data, []byte(`\"i\":1`), []byte(`\"i\":7`), 1)
	if bytes.Equal(edited, data) {
		t.Fatal("could not edit the archive")
	}
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	truncated := bytes.Join(lines[:len(lines)-1], []byte("\n"))
	tests := []struct {
		name    string
		s       *postgres.Store
		archive []byte
		before  time.Time
		want    string
	}{
		{"no archive", f.retention, nil, cut, "no trailer"},
		{"truncated archive", f.retention, truncated, cut, "no trailer"},
		{"edited archive", f.retention, edited, cut, "hash mismatch"},
		{"another cut", f.retention, data, cut.Add(time.Hour), "was cut at"},
		{"serving role", f.app, data, cut, "permission denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := audit.Purge(ctx, tc.s, bytes.NewReader(tc.archive), tc.before, "operator:test", nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if tc.s == f.app {
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
					t.Fatalf("serving role: %v, want insufficient_privilege", err)
				}
			}
		})
	}
	// An archive that does not match the database: the chain was
	// rewritten after it was taken.
	if _, err := f.owner.Exec(ctx, `UPDATE audit_seals SET hash = '\x00' WHERE pos = 2`); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Purge(ctx, f.retention, bytes.NewReader(data), cut, "operator:test", nil); err == nil || !strings.Contains(err.Error(), "does not match the store") {
		t.Fatalf("mismatched archive: %v", err)
	}
	var n int
	if err := f.owner.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&n); err != nil || n != 5 {
		t.Fatalf("records after refused purges: %d %v", n, err)
	}
}
