package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/store/postgres"
)

// runNhsid runs the binary and returns stdout and the exit code.
func runNhsid(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String() + errb.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}

// TestAuditCommands: verify passes, export streams JSON Lines, and after a
// superuser rewrite that re-hashes the chain, verify against the exported
// checkpoints fails at the checkpoint; a plain tamper fails at the record.
// auditDB is a throwaway migrated database: its URL for the CLI, and a
// pool and store for the test's own records.
func auditDB(t *testing.T) (string, *pgxpool.Pool, *postgres.Store) {
	t.Helper()
	u := testdb.URL(t)
	pool, err := pgxpool.New(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return u, pool, postgres.New(pool)
}

func TestAuditCommands(t *testing.T) {
	ctx := context.Background()
	u, pool, s := auditDB(t)
	l := audit.NewLog(s, audit.Options{})
	for i := range 5 {
		if err := l.Record(ctx, audit.Event{Type: audit.TokenIssued, Subject: "555000000001", Client: "c", Detail: map[string]any{"i": i}}); err != nil {
			t.Fatal(err)
		}
	}
	_, key, _ := ed25519.GenerateKey(nil)
	if _, err := (&audit.Sealer{Store: s, Key: key}).Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := (&audit.Sealer{Store: s, Key: key}).Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	env := []string{"NHSID_CONFIG=", "NHSID_DATABASE_URL=", audit.EnvSigningKey + "=" + base64.StdEncoding.EncodeToString(key.Seed())}
	db := "--database-url=" + u

	out, code := runNhsid(t, env, "audit", "verify", db)
	if code != 0 || !strings.Contains(out, `"ok": true`) || !strings.Contains(out, `"checked": 5`) || !strings.Contains(out, `"unsealed": 0`) {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
	out, code = runNhsid(t, env, "audit", "export", db, "--since", "2000-01-01T00:00:00Z", "--format", "jsonl")
	if code != 0 || strings.Count(out, "\n") != 5 {
		t.Fatalf("export: exit %d\n%s", code, out)
	}
	var first audit.Event
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &first); err != nil || first.Type != audit.TokenIssued || first.Seq != 1 {
		t.Fatalf("export line: %v %+v", err, first)
	}
	cps, code := runNhsid(t, env, "audit", "checkpoints", db)
	if code != 0 || strings.Count(cps, "\n") != 1 {
		t.Fatalf("checkpoints: exit %d\n%s", code, cps)
	}
	cpFile := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	if err := os.WriteFile(cpFile, []byte(cps), 0o600); err != nil {
		t.Fatal(err)
	}

	// Tamper record 3 and re-hash the chain as a superuser would.
	if _, err := pool.Exec(ctx, `UPDATE audit_events SET client = 'forged' WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	out, code = runNhsid(t, env, "audit", "verify", db, "--from", "2", "--to", "4")
	if code != 1 || !strings.Contains(out, `"pos": 3`) {
		t.Fatalf("verify after tamper: exit %d\n%s", code, out)
	}
	links, err := s.SealedAudit(ctx, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	prev := audit.GenesisHash
	for _, ln := range links {
		prev = audit.NextHash(prev, ln.Event)
		if _, err := pool.Exec(ctx, `UPDATE audit_seals SET hash = $1 WHERE pos = $2`, prev, ln.Pos); err != nil {
			t.Fatal(err)
		}
	}
	if out, code = runNhsid(t, env, "audit", "verify", db); code != 0 {
		t.Fatalf("re-hashed chain should pass without checkpoints: exit %d\n%s", code, out)
	}
	out, code = runNhsid(t, env, "audit", "verify", db, "--checkpoints", cpFile)
	if code != 1 || !strings.Contains(out, "rewritten") || !strings.Contains(out, `"pos": 5`) {
		t.Fatalf("verify against checkpoints: exit %d\n%s", code, out)
	}

	// A record not yet chained is reported as such.
	if err := l.Record(ctx, audit.Event{Type: audit.TokenIssued, Subject: "555000000001", Client: "c"}); err != nil {
		t.Fatal(err)
	}
	if out, _ = runNhsid(t, env, "audit", "verify", db); !strings.Contains(out, `"unsealed": 1`) {
		t.Fatalf("verify with a record not yet sealed:\n%s", out)
	}
}

// TestAuditSurvivesSIGKILL runs parallel token requests against `nhsid
// serve` on PostgreSQL, kills it with SIGKILL mid-load and restarts it.
// Every token a client received has its token.issued event (the event
// commits in the token's transaction: events equal token rows exactly), the
// restarted server seals what was left, every record is sealed once and the
// chain verifies against the checkpoints.
func TestAuditSurvivesSIGKILL(t *testing.T) {
	ctx := context.Background()
	dbURL := testdb.URL(t)
	port, adminPort := freePort(t), freePort(t)
	secret := strings.Repeat("5a", 32)
	token := "admin-" + secret
	cfgFile := filepath.Join(t.TempDir(), "nhsid.yaml")
	cfg := "issuer: http://localhost:" + port + "\n" +
		"secrets: {global_secret: \"" + secret + "\", client_secret_pepper: \"" + secret + "\", key_encryption_key: \"" + secret + "\"}\n" +
		"admin: {bootstrap_token: \"" + token + "\"}\n" +
		"rate_limits: {disabled: true}\n"
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	env := []string{"NHSID_DATABASE_URL=" + dbURL, "NHSID_CONFIG=", audit.EnvSigningKey + "=" + base64.StdEncoding.EncodeToString(key.Seed())}
	serve := func() *started {
		p := start(t, env, "serve", "--config", cfgFile, "--listen", "127.0.0.1:"+port, "--admin-listen", "127.0.0.1:"+adminPort)
		waitStatus(t, "http://127.0.0.1:"+port+"/readyz", 200, 30*time.Second)
		return p
	}
	p := serve()

	meta := `{"client_name":"load","grant_types":["client_credentials"],"redirect_uris":[],"scope":"","token_endpoint_auth_method":"client_secret_basic"}`
	req, _ := http.NewRequest("POST", "http://127.0.0.1:"+adminPort+"/admin/v1/clients", strings.NewReader(meta))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var client struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&client)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("register client: %d", resp.StatusCode)
	}

	var mu sync.Mutex
	received := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 5 * time.Second}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, _ := http.NewRequest("POST", "http://127.0.0.1:"+port+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				r.SetBasicAuth(client.ID, client.Secret)
				resp, err := hc.Do(r)
				if err != nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				var out struct {
					AccessToken string `json:"access_token"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if resp.StatusCode == 200 && out.AccessToken != "" {
					mu.Lock()
					received[out.AccessToken] = true
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	mu.Lock()
	got := len(received)
	mu.Unlock()
	if got == 0 {
		t.Fatal("no token was issued before the kill")
	}

	p = serve()
	defer func() { _ = p.cmd.Process.Signal(syscall.SIGTERM); <-p.done }()

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var events, tokens int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE type = 'token.issued' AND client = $1`, client.ID).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM oauth_tokens WHERE kind = 'access' AND client_id = $1`, client.ID).Scan(&tokens); err != nil {
		t.Fatal(err)
	}
	t.Logf("tokens received by clients %d, token rows %d, token.issued events %d", got, tokens, events)
	if events != tokens || events < got {
		t.Fatalf("token.issued events %d, token rows %d, tokens received %d: want events == rows >= received", events, tokens, got)
	}

	// The restarted server's sealer seals the rest (verify --seal waits).
	out, code := runNhsid(t, env, "audit", "verify", "--seal", "--database-url="+dbURL)
	if code != 0 || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("verify after restart: exit %d\n%s", code, out)
	}
	var all, sealed, distinct int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_events), (SELECT count(*) FROM audit_seals), (SELECT count(DISTINCT seq) FROM audit_seals)`).Scan(&all, &sealed, &distinct); err != nil {
		t.Fatal(err)
	}
	if sealed != all || distinct != all {
		t.Fatalf("%d records, %d seals, %d distinct: want every record sealed exactly once", all, sealed, distinct)
	}
	cps, code := runNhsid(t, env, "audit", "checkpoints", "--database-url="+dbURL)
	if code != 0 {
		t.Fatalf("checkpoints: %s", cps)
	}
	cpFile := filepath.Join(t.TempDir(), "cp.jsonl")
	_ = os.WriteFile(cpFile, []byte(cps), 0o600)
	if out, code := runNhsid(t, env, "audit", "verify", "--checkpoints", cpFile, "--database-url="+dbURL); code != 0 {
		t.Fatalf("verify with checkpoints: exit %d\n%s", code, out)
	}
}
