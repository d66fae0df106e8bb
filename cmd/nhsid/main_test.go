package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nhsid/nhsid/internal/faultproxy"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nhsid-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "nhsid")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build nhsid: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}

// lockedBuffer is a bytes.Buffer that a running process's output can be
// written to while a test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// started is a running nhsid process.
type started struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	done   chan error
}

func start(t *testing.T, env []string, args ...string) *started {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	s := &started{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nhsid stdout:\n%s\nnhsid stderr (tail):\n%s", s.stdout, tailString(s.stderr.String(), 3000))
		}
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// waitStatus polls url until it answers want, or fails after d.
func waitStatus(t *testing.T, u string, want int, d time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	c := &http.Client{Timeout: 2 * time.Second}
	last := 0
	for time.Since(begin) < d {
		resp, err := c.Get(u)
		if err == nil {
			resp.Body.Close()
			last = resp.StatusCode
			if resp.StatusCode == want {
				return time.Since(begin)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: wanted %d within %s, last status %d", u, want, d, last)
	return 0
}

func TestBadConfigExitsTwoListingEveryProblem(t *testing.T) {
	f := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(f, []byte("issuer: ftp://nope\nkeys: {algorithm: HS256}\nlog: {level: loud}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "--config", f)
	cmd.Env = append(os.Environ(), "NHSID_DATABASE_URL=")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit = %v, want code 2; output:\n%s", err, out)
	}
	for _, want := range []string{"issuer", "keys.algorithm", "log.level", "database.url", "secrets.global_secret"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(string(out), "\n  - "); n < 5 {
		t.Errorf("want one message listing every problem, got %d items:\n%s", n, out)
	}
}

func TestServeWithoutDatabaseRefuses(t *testing.T) {
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(os.Environ(), "NHSID_DATABASE_URL=", "NHSID_CONFIG=")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit = %v, want 2; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "database.url: required") {
		t.Fatalf("no clear database message:\n%s", out)
	}
}

func TestServeDevStartsAndStopsCleanly(t *testing.T) {
	port, admin := freePort(t), freePort(t)
	p := start(t, []string{"NHSID_DATABASE_URL=", "NHSID_CONFIG="}, "serve", "--dev", "--listen", "127.0.0.1:"+port, "--admin-listen", "127.0.0.1:"+admin)
	took := waitStatus(t, "http://127.0.0.1:"+port+"/healthz", 200, 20*time.Second)
	t.Logf("serve --dev answered /healthz %s after exec", took)
	waitStatus(t, "http://127.0.0.1:"+admin+"/metrics", 200, 5*time.Second)
	mresp, err := http.Get("http://127.0.0.1:" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !strings.Contains(string(metrics), "nhsid_audit_seal_lag_seconds") {
		t.Error("/metrics lacks nhsid_audit_seal_lag_seconds")
	}
	resp, err := http.Get("http://127.0.0.1:" + port + "/.well-known/openid-configuration")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("discovery: %v %v", err, resp)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("security headers missing: %v", resp.Header)
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after Ctrl-C: %v\nstderr:\n%s", err, p.stderr)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("did not stop within 25s of SIGINT")
	}
	out := p.stdout.String()
	for _, want := range []string{"/.well-known/openid-configuration", "/enrol?invite=", "Admin token", "/demo"} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(p.stderr.String(), "shutting down") {
		t.Errorf("no drain log line:\n%s", p.stderr)
	}
}

// emptyDatabase creates a database with no schema and returns its URL.
func emptyDatabase(t *testing.T) string {
	t.Helper()
	base := os.Getenv("NHSID_TEST_DATABASE_URL")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("PostgreSQL is needed at %s: %v", base, err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "nhsid_cmd_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	u, _ := url.Parse(base)
	u.Path = "/" + name
	return u.String()
}

func TestMigrateThenServeReadinessFollowsDatabase(t *testing.T) {
	dbURL := emptyDatabase(t)
	for i := 0; i < 2; i++ { // the second run is a no-op
		out, err := exec.Command(binary, "migrate", "up", "--database-url", dbURL).CombinedOutput()
		if err != nil {
			t.Fatalf("migrate up (run %d): %v\n%s", i+1, err, out)
		}
	}
	out, err := exec.Command(binary, "migrate", "status", "--database-url", dbURL).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"Applied": true`) && !strings.Contains(string(out), `"applied": true`) {
		t.Fatalf("migrate status: %v\n%s", err, out)
	}

	u, _ := url.Parse(dbURL)
	proxy, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	u.Host = proxy.Addr()

	port, admin := freePort(t), freePort(t)
	secret := strings.Repeat("5a", 32)
	cfgFile := filepath.Join(t.TempDir(), "nhsid.yaml")
	cfg := fmt.Sprintf("issuer: http://localhost:%s\nsecrets: {global_secret: %q, client_secret_pepper: %q, key_encryption_key: %q}\n", port, secret, secret, secret)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, []string{"NHSID_DATABASE_URL=" + u.String()}, "serve", "--config", cfgFile,
		"--listen", "127.0.0.1:"+port, "--admin-listen", "127.0.0.1:"+admin)
	ready := "http://127.0.0.1:" + port + "/readyz"
	waitStatus(t, ready, 200, 20*time.Second)

	proxy.Cut()
	took := waitStatus(t, ready, 503, 10*time.Second)
	t.Logf("/readyz turned 503 %s after the cut", took)
	resp, err := http.Get("http://127.0.0.1:" + port + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz must stay 200 while the database is down: %v %v", err, resp)
	}
	resp.Body.Close()

	proxy.Restore()
	took = waitStatus(t, ready, 200, 15*time.Second)
	t.Logf("/readyz back to 200 %s after restore", took)

	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

func TestKeysRotateAndList(t *testing.T) {
	dbURL := emptyDatabase(t)
	if out, err := exec.Command(binary, "migrate", "up", "--database-url", dbURL).CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	secret := strings.Repeat("7b", 32)
	cfgFile := filepath.Join(t.TempDir(), "nhsid.yaml")
	cfg := fmt.Sprintf("issuer: https://id.example.nhs.uk\nsecrets: {global_secret: %q, client_secret_pepper: %q, key_encryption_key: %q}\n", secret, secret, secret)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []map[string]any {
		t.Helper()
		cmd := exec.Command(binary, append(args, "--config", cfgFile)...)
		cmd.Env = append(os.Environ(), "NHSID_DATABASE_URL="+dbURL)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stderr.String())
		}
		var keys []map[string]any
		if err := json.Unmarshal(stdout.Bytes(), &keys); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stdout.String())
		}
		return keys
	}
	before := run("keys", "list")
	if len(before) == 0 {
		t.Fatal("no keys after first start")
	}
	after := run("keys", "rotate")
	if len(after) != 2*len(before) {
		t.Fatalf("rotate: %d keys before, %d after; want one new key per algorithm", len(before), len(after))
	}
	for _, k := range after[len(before):] {
		active, _ := time.Parse(time.RFC3339Nano, k["active_at"].(string))
		if time.Until(active) < 50*time.Minute {
			t.Errorf("new key %v signs at %v: want about an hour of pre-publication", k["kid"], active)
		}
	}
	for _, k := range after[:len(before)] {
		if k["retired_at"] == nil || k["expires_at"] == nil {
			t.Errorf("old key %v not scheduled to retire and expire: %v", k["kid"], k)
		}
	}
}
