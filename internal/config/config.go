// Package config is nhsid's configuration: one YAML file decoded into Config,
// explicit environment expansion ($VAR or ${VAR} in values; $$ for a literal
// dollar), a few named environment knobs listed in Knobs, defaults, and
// Validate, which reports every problem at once. Only cmd/nhsid and
// internal/server import it; each domain package takes its own small Config.
package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nhsid/nhsid/internal/ratelimit"
)

// Knobs are the environment variables nhsid reads by name. Everything else
// comes from the config file (which may reference variables explicitly).
var Knobs = map[string]string{
	"NHSID_CONFIG":               "path of the config file (same as --config)",
	"NHSID_DATABASE_URL":         "PostgreSQL URL the server uses (overrides database.url)",
	"NHSID_MIGRATE_DATABASE_URL": "PostgreSQL URL with DDL rights, used by `nhsid migrate` and auto_migrate (overrides database.migrate_url)",
	"NHSID_ADMIN_TOKEN":          "bootstrap admin bearer token (overrides admin.bootstrap_token)",
	"NHSID_TOKEN":                "bearer token the `nhsid admin` CLI sends",
	"NHSID_AUDIT_SIGNING_KEY":    "base64 Ed25519 seed that signs audit checkpoints (read by the audit package)",
	"NHSID_PPROF":                "1 serves /debug/pprof/ on the admin listener",
}

// Config is the whole configuration.
type Config struct {
	// Issuer is the public base URL, e.g. https://id.example.nhs.uk. It is
	// never derived from request headers.
	Issuer      string `yaml:"issuer"`
	Listen      string `yaml:"listen"`
	AdminListen string `yaml:"admin_listen"`

	Database  Database  `yaml:"database"`
	Secrets   Secrets   `yaml:"secrets"`
	Admin     Admin     `yaml:"admin"`
	WebAuthn  WebAuthn  `yaml:"webauthn"`
	Tokens    Tokens    `yaml:"tokens"`
	Keys      Keys      `yaml:"keys"`
	Sessions  Sessions  `yaml:"sessions"`
	Enrolment Enrolment `yaml:"enrolment"`
	TLS       TLS       `yaml:"tls"`
	// TrustedProxies are CIDRs whose X-Forwarded-For is believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	Log            Log      `yaml:"log"`
	// RateLimits are the request rates and lockouts (internal/ratelimit).
	RateLimits ratelimit.Config `yaml:"rate_limits"`
	// Risk configures the contextual sign-in risk engine (risk.go).
	Risk Risk `yaml:"risk"`
	// Audit configures the audit trail (docs/audit.md).
	Audit Audit `yaml:"audit"`
}

// Audit settings.
type Audit struct {
	// Retention is how long audit records are kept before `nhsid audit
	// archive` and `nhsid audit purge` may remove them (the default cut
	// of those commands); 0, the default, keeps them for ever. At least
	// 24h when set.
	Retention time.Duration `yaml:"retention"`
}

// Database settings.
type Database struct {
	URL         string `yaml:"url"`
	MigrateURL  string `yaml:"migrate_url"`
	AutoMigrate bool   `yaml:"auto_migrate"`
	MaxConns    int32  `yaml:"max_conns"`
	// MinConns is how many connections the pool keeps open while idle
	// and opens before serving, so that the first burst after a start or
	// a quiet night does not wait for PostgreSQL to start backends.
	// Unset (-1) means max_conns; 0 opens connections only on demand.
	MinConns int32 `yaml:"min_conns"`
	// ConnectTimeout bounds opening one connection (default 5s).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// RequestTimeout bounds the database work of one request, including
	// waiting for a pooled connection; past it the request fails with 503
	// temporarily_unavailable (default 5s).
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// StatementTimeout, when set, is PostgreSQL's statement_timeout for
	// the serving pool.
	StatementTimeout time.Duration `yaml:"statement_timeout"`
}

// PoolMinConns is the pool's minimum for a pool of at most maxConns:
// MinConns, or maxConns when it is unset.
func (d Database) PoolMinConns(maxConns int32) int32 {
	if d.MinConns < 0 || d.MinConns > maxConns {
		return maxConns
	}
	return d.MinConns
}

// Secrets: each is base64 (std or URL) or hex, at least 32 bytes decoded, or
// read from the matching *_file. Identical on every replica.
type Secrets struct {
	GlobalSecret           string `yaml:"global_secret"`
	GlobalSecretFile       string `yaml:"global_secret_file"`
	ClientSecretPepper     string `yaml:"client_secret_pepper"`
	ClientSecretPepperFile string `yaml:"client_secret_pepper_file"`
	KeyEncryptionKey       string `yaml:"key_encryption_key"`
	KeyEncryptionKeyFile   string `yaml:"key_encryption_key_file"`
}

// Admin settings.
type Admin struct {
	BootstrapToken string `yaml:"bootstrap_token"`
}

// WebAuthn settings.
type WebAuthn struct {
	RPID            string   `yaml:"rp_id"`
	RPName          string   `yaml:"rp_name"`
	Origins         []string `yaml:"origins"`
	MDSFile         string   `yaml:"mds_file"`
	MDSRootCert     string   `yaml:"mds_root_cert"`
	TrustAnchors    []string `yaml:"trust_anchors"`
	AAGUIDAllowList []string `yaml:"aaguid_allow_list"`
}

// Tokens lifetimes.
type Tokens struct {
	AccessTokenTTL  time.Duration `yaml:"access_token_ttl"`
	IDTokenTTL      time.Duration `yaml:"id_token_ttl"`
	AuthCodeTTL     time.Duration `yaml:"auth_code_ttl"`
	RefreshTokenTTL time.Duration `yaml:"refresh_token_ttl"`
	RefreshGrace    time.Duration `yaml:"refresh_grace"`
}

// Keys settings.
type Keys struct {
	Algorithm        string        `yaml:"algorithm"`
	RotationInterval time.Duration `yaml:"rotation_interval"`
	Prepublish       time.Duration `yaml:"prepublish"`
	// ReloadInterval is how often each replica reloads keys from the
	// database, so a key rotated or revoked on one replica reaches all of
	// them within it (default 1m).
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// Lifetime of a session at one AAL.
type Lifetime struct {
	Absolute time.Duration `yaml:"absolute"`
	Idle     time.Duration `yaml:"idle"`
}

// Sessions lifetimes per AAL (NIST SP 800-63B defaults).
type Sessions struct {
	AAL3 Lifetime `yaml:"aal3"`
	AAL2 Lifetime `yaml:"aal2"`
}

// Enrolment settings.
type Enrolment struct {
	InviteTTL time.Duration `yaml:"invite_ttl"`
}

// TLS: when both files are set, nhsid terminates TLS itself (TLS 1.2+).
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Log settings.
type Log struct {
	Level string `yaml:"level"` // debug, info, warn, error
}

// DefaultMaxConns is database.max_conns unless set: four connections per
// CPU the process may use, from 4 to 32. More backends than PostgreSQL
// has cores to run them queue on its locks (the WAL's above all): on a
// 2-core machine, 20 connections made sign-ins a fifth slower, and their
// p99 twice as long, as 8 (docs/performance.md, round 10).
func DefaultMaxConns() int32 {
	return int32(min(max(4*runtime.GOMAXPROCS(0), 4), 32))
}

// Defaults returns a Config with every default filled in.
func Defaults() Config {
	return Config{
		Listen:      ":8080",
		AdminListen: "127.0.0.1:8081",
		Database:    Database{MaxConns: DefaultMaxConns(), MinConns: -1, ConnectTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second},
		WebAuthn:    WebAuthn{RPName: "nhsid"},
		Tokens: Tokens{
			AccessTokenTTL:  time.Hour,
			IDTokenTTL:      time.Hour,
			AuthCodeTTL:     5 * time.Minute,
			RefreshTokenTTL: 12 * time.Hour,
			RefreshGrace:    5 * time.Second,
		},
		Keys: Keys{Algorithm: "RS256", RotationInterval: 90 * 24 * time.Hour, Prepublish: time.Hour, ReloadInterval: time.Minute},
		Sessions: Sessions{
			AAL3: Lifetime{Absolute: 12 * time.Hour, Idle: 15 * time.Minute},
			AAL2: Lifetime{Absolute: 12 * time.Hour, Idle: 30 * time.Minute},
		},
		Enrolment: Enrolment{InviteTTL: 15 * time.Minute},
		Log:       Log{Level: "info"},
	}
}

// Load reads path (if not empty) over the defaults, expands $VAR references,
// and applies the named knobs. It does not validate.
func Load(path string) (Config, error) {
	cfg := Defaults()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		if err := Parse(raw, &cfg); err != nil {
			return cfg, err
		}
	}
	cfg.ApplyEnv(os.Getenv)
	return cfg, nil
}

// Parse decodes YAML (after $VAR expansion) into cfg. Unknown keys are errors.
func Parse(raw []byte, cfg *Config) error {
	expanded := Expand(string(raw), os.Getenv)
	dec := yaml.NewDecoder(bytes.NewReader([]byte(expanded)))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// Expand replaces $VAR and ${VAR} with getenv's value; $$ is a literal $.
func Expand(s string, getenv func(string) string) string {
	const marker = "\x00dollar\x00"
	s = strings.ReplaceAll(s, "$$", marker)
	s = os.Expand(s, getenv)
	return strings.ReplaceAll(s, marker, "$")
}

// ApplyEnv applies the named knobs that are set.
func (c *Config) ApplyEnv(getenv func(string) string) {
	if v := getenv("NHSID_DATABASE_URL"); v != "" {
		c.Database.URL = v
	}
	if v := getenv("NHSID_MIGRATE_DATABASE_URL"); v != "" {
		c.Database.MigrateURL = v
	}
	if v := getenv("NHSID_ADMIN_TOKEN"); v != "" {
		c.Admin.BootstrapToken = v
	}
}

// Validate reports every problem at once, one per line. dev relaxes the
// rules that `serve --dev` fills in itself (secrets, database).
func (c *Config) Validate(dev bool) error {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	if c.Issuer == "" {
		add("issuer: required (the public base URL, e.g. https://id.example.nhs.uk)")
	} else if u, err := url.Parse(c.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		add("issuer: %q is not an absolute http(s) URL", c.Issuer)
	} else {
		if u.Scheme == "http" && !dev && !isLoopbackHost(u.Hostname()) {
			add("issuer: must use https outside dev (got %q)", c.Issuer)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			add("issuer: must not have a query or fragment")
		}
	}
	for _, l := range []struct{ name, addr string }{{"listen", c.Listen}, {"admin_listen", c.AdminListen}} {
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			add("%s: %q is not host:port", l.name, l.addr)
		}
	}
	if !dev && c.Database.URL == "" {
		add("database.url: required (or set NHSID_DATABASE_URL); only `serve --dev` runs without a database")
	}
	if c.Database.MaxConns < 0 {
		add("database.max_conns: must be positive")
	}
	if c.Database.MinConns < -1 || (c.Database.MaxConns > 0 && c.Database.MinConns > c.Database.MaxConns) {
		add("database.min_conns: must be from 0 to max_conns (%d)", c.Database.MaxConns)
	}
	for _, s := range []struct{ name, val, file string }{
		{"secrets.global_secret", c.Secrets.GlobalSecret, c.Secrets.GlobalSecretFile},
		{"secrets.client_secret_pepper", c.Secrets.ClientSecretPepper, c.Secrets.ClientSecretPepperFile},
		{"secrets.key_encryption_key", c.Secrets.KeyEncryptionKey, c.Secrets.KeyEncryptionKeyFile},
	} {
		if s.val == "" && s.file == "" {
			if !dev {
				add("%s: required (or %s_file); 32+ random bytes, base64 or hex", s.name, s.name)
			}
			continue
		}
		if _, err := secretBytes(s.val, s.file); err != nil {
			add("%s: %v", s.name, err)
		}
	}
	switch c.Keys.Algorithm {
	case "RS256", "PS256", "ES256":
	default:
		add("keys.algorithm: %q is not one of RS256, PS256, ES256", c.Keys.Algorithm)
	}
	for _, d := range []struct {
		name string
		val  time.Duration
	}{
		{"tokens.access_token_ttl", c.Tokens.AccessTokenTTL}, {"tokens.id_token_ttl", c.Tokens.IDTokenTTL},
		{"tokens.auth_code_ttl", c.Tokens.AuthCodeTTL}, {"tokens.refresh_token_ttl", c.Tokens.RefreshTokenTTL},
		{"keys.rotation_interval", c.Keys.RotationInterval}, {"enrolment.invite_ttl", c.Enrolment.InviteTTL},
		{"sessions.aal3.absolute", c.Sessions.AAL3.Absolute}, {"sessions.aal3.idle", c.Sessions.AAL3.Idle},
		{"sessions.aal2.absolute", c.Sessions.AAL2.Absolute}, {"sessions.aal2.idle", c.Sessions.AAL2.Idle},
	} {
		if d.val <= 0 {
			add("%s: must be a positive duration (e.g. 15m)", d.name)
		}
	}
	if c.Tokens.RefreshGrace < 0 || c.Tokens.RefreshGrace > time.Minute {
		add("tokens.refresh_grace: must be between 0 and 1m")
	}
	if c.Audit.Retention < 0 || (c.Audit.Retention > 0 && c.Audit.Retention < 24*time.Hour) {
		add("audit.retention: must be 0 (keep for ever) or at least 24h")
	}
	if c.Keys.Prepublish < 0 {
		add("keys.prepublish: must not be negative")
	}
	if c.Keys.ReloadInterval < 0 {
		add("keys.reload_interval: must not be negative")
	}
	if c.Database.ConnectTimeout < 0 || c.Database.RequestTimeout < 0 || c.Database.StatementTimeout < 0 {
		add("database: timeouts must not be negative")
	}
	if err := c.RateLimits.WithDefaults().Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			add("%s", line)
		}
	}
	if c.Sessions.AAL3.Idle > c.Sessions.AAL3.Absolute || c.Sessions.AAL2.Idle > c.Sessions.AAL2.Absolute {
		add("sessions: idle timeout must not exceed the absolute lifetime")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		add("tls: cert_file and key_file go together")
	}
	for _, cidr := range c.TrustedProxies {
		if _, _, err := net.ParseCIDR(cidr); err != nil {
			add("trusted_proxies: %q is not a CIDR", cidr)
		}
	}
	for _, o := range c.WebAuthn.Origins {
		if u, err := url.Parse(o); err != nil || u.Host == "" || u.Path != "" {
			add("webauthn.origins: %q is not an origin (scheme://host[:port])", o)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	if len(p) == 0 {
		return nil
	}
	return &Problems{List: p}
}

// Problems is a Validate failure.
type Problems struct{ List []string }

func (p *Problems) Error() string {
	return "invalid configuration:\n  - " + strings.Join(p.List, "\n  - ")
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Secret returns the decoded bytes of a secret given inline or as a file.
func Secret(val, file string) ([]byte, error) { return secretBytes(val, file) }

func secretBytes(val, file string) ([]byte, error) {
	if file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		val = strings.TrimSpace(string(raw))
	}
	var b []byte
	var err error
	if h, herr := hex.DecodeString(val); herr == nil {
		b = h
	} else if b, err = base64.StdEncoding.DecodeString(val); err != nil {
		if b, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(val, "=")); err != nil {
			return nil, errors.New("not valid base64 or hex")
		}
	}
	if len(b) < 32 {
		return nil, fmt.Errorf("too short: %d bytes, need at least 32", len(b))
	}
	return b, nil
}
