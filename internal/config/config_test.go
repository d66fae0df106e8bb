package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	env := map[string]string{"A": "x", "B": "y"}
	get := func(k string) string { return env[k] }
	tests := []struct{ name, in, want string }{
		{"plain", "abc", "abc"},
		{"var", "$A-${B}", "x-y"},
		{"unset", "$NOPE.", "."},
		{"literal dollar", "p$$w", "p$w"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Expand(tt.in, get); got != tt.want {
				t.Fatalf("Expand(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	raw := []byte(`
issuer: "ftp://x"
listen: "nope"
database: {url: ""}
secrets: {global_secret: "c2hvcnQ="}
keys: {algorithm: HS256}
sessions: {aal3: {absolute: 1m, idle: 2m}}
tls: {cert_file: a.pem}
trusted_proxies: ["10.0.0.0/33"]
log: {level: loud}
`)
	cfg := Defaults()
	if err := Parse(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	err := cfg.Validate(false)
	var p *Problems
	if !errors.As(err, &p) {
		t.Fatalf("want *Problems, got %v", err)
	}
	for _, want := range []string{"issuer", "listen", "database.url", "secrets.global_secret: too short",
		"secrets.client_secret_pepper", "keys.algorithm", "sessions: idle", "tls:", "trusted_proxies", "log.level"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q:\n%s", want, err)
		}
	}
}

func TestValidDevAndProduction(t *testing.T) {
	dev := Defaults()
	dev.Issuer = "http://localhost:8080"
	if err := dev.Validate(true); err != nil {
		t.Fatalf("dev defaults: %v", err)
	}
	prod := Defaults()
	prod.Issuer = "https://id.example.nhs.uk"
	prod.Database.URL = "postgres://nhsid@db/nhsid"
	secret := strings.Repeat("ab", 32)
	prod.Secrets = Secrets{GlobalSecret: secret, ClientSecretPepper: secret, KeyEncryptionKey: secret}
	if err := prod.Validate(false); err != nil {
		t.Fatalf("production: %v", err)
	}
	prod.Issuer = "http://id.example.nhs.uk"
	if err := prod.Validate(false); err == nil || !strings.Contains(err.Error(), "https") {
		t.Fatalf("http issuer outside dev must fail, got %v", err)
	}
}

func TestUnknownKeyAndFileSecrets(t *testing.T) {
	cfg := Defaults()
	if err := Parse([]byte("isuer: x\n"), &cfg); err == nil {
		t.Fatal("unknown key accepted")
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "kek")
	if err := os.WriteFile(f, []byte(strings.Repeat("0f", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := Secret("", f)
	if err != nil || len(b) != 32 {
		t.Fatalf("Secret from file: %d bytes, %v", len(b), err)
	}
	t.Setenv("NHSID_TEST_SECRET", strings.Repeat("cd", 32))
	cfg = Defaults()
	if err := Parse([]byte("secrets: {global_secret: $NHSID_TEST_SECRET}\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Secrets.GlobalSecret != strings.Repeat("cd", 32) {
		t.Fatalf("env expansion: %q", cfg.Secrets.GlobalSecret)
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	cfg := Defaults()
	if err := Parse(nil, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":8080" {
		t.Fatalf("listen = %q", cfg.Listen)
	}
}

func TestExampleConfigParses(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/nhsid.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Defaults()
	if err := Parse(raw, &cfg); err != nil {
		t.Fatalf("example config: %v", err)
	}
	if cfg.Issuer != "https://id.example.nhs.uk" || cfg.Tokens.RefreshGrace.Seconds() != 5 {
		t.Fatalf("unexpected values: %+v", cfg)
	}
}

// TestMinConns: unset, the pool keeps max_conns open; 0 opens on demand;
// a value outside 0..max_conns is refused.
func TestMinConns(t *testing.T) {
	cfg := Defaults()
	if err := Parse([]byte("database: {max_conns: 6}"), &cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Database.PoolMinConns(6); got != 6 {
		t.Errorf("unset min_conns: pool minimum %d, want max_conns 6", got)
	}
	for raw, want := range map[string]int32{"{max_conns: 6, min_conns: 0}": 0, "{max_conns: 6, min_conns: 2}": 2} {
		cfg := Defaults()
		if err := Parse([]byte("database: "+raw), &cfg); err != nil {
			t.Fatal(err)
		}
		if got := cfg.Database.PoolMinConns(6); got != want {
			t.Errorf("%s: pool minimum %d, want %d", raw, got, want)
		}
	}
	for _, raw := range []string{"{max_conns: 6, min_conns: 7}", "{min_conns: -2}"} {
		cfg := Defaults()
		cfg.Issuer = "http://localhost:8080"
		if err := Parse([]byte("database: "+raw), &cfg); err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(true); err == nil || !strings.Contains(err.Error(), "database.min_conns") {
			t.Errorf("%s: Validate = %v, want a database.min_conns problem", raw, err)
		}
	}
}
