package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/store/postgres"
)

// TestAuditRetentionCommands: archive writes the old records; purge is
// refused without a matching archive and as the owner of a different cut;
// purge as the retention role deletes them; verify then passes from the
// boundary.
func TestAuditRetentionCommands(t *testing.T) {
	ctx := context.Background()
	u := testdb.URL(t)
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	role := "nhsid_ret_cli_" + hex.EncodeToString(b)
	if _, err := pool.Exec(ctx, `CREATE ROLE `+role+` LOGIN`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = pool.Exec(context.Background(), `DROP ROLE `+role)
	})
	if err := postgres.GrantRetentionRole(ctx, pool, role); err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	pu.User = url.User(role)

	s := postgres.New(pool)
	l := audit.NewLog(s, audit.Options{})
	cut := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	for i := range 6 {
		at := cut.Add(time.Duration(i-4) * time.Hour) // four before the cut
		if err := l.Record(ctx, audit.Event{Type: audit.TokenIssued, Subject: "555000000001", Time: at, Detail: map[string]any{"i": i}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := (&audit.Sealer{Store: s}).Flush(ctx); err != nil {
		t.Fatal(err)
	}
	env := []string{"NHSID_CONFIG=", "NHSID_DATABASE_URL="}
	db, ret := "--database-url="+u, "--database-url="+pu.String()
	before := "--before=" + cut.Format(time.RFC3339)
	file := filepath.Join(t.TempDir(), "archive.jsonl")

	steps := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"archive", []string{"audit", "archive", db, before, "--out", file}, 0, `"count": 4`},
		{"archive never overwrites", []string{"audit", "archive", db, before, "--out", file}, 2, "exists"},
		{"purge without archive", []string{"audit", "purge", ret, before}, 2, "--archive"},
		{"purge with another cut", []string{"audit", "purge", ret, "--before=2024-06-02T00:00:00Z", "--archive", file}, 1, "was cut at"},
		{"purge", []string{"audit", "purge", ret, before, "--archive", file}, 0, `"deleted": 4`},
		{"verify", []string{"audit", "verify", db, "--seal"}, 0, `"checked": 3`},
	}
	for _, st := range steps {
		out, code := runNhsid(t, env, st.args...)
		if code != st.code || !strings.Contains(out, st.want) {
			t.Fatalf("%s: exit %d (want %d)\n%s", st.name, code, st.code, out)
		}
	}
}
