package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nhsid/nhsid/internal/config"
	"github.com/nhsid/nhsid/internal/server"
	"github.com/nhsid/nhsid/internal/testdb"
)

// BenchmarkTokenAudit measures what auditing adds to a token request
// (client_credentials at the token endpoint: one token.issued event,
// committed before the response) and to introspection (grouped), with
// auditing on and off, on both stores, with 8×GOMAXPROCS concurrent
// clients. client_credentials runs outside a fosite transaction, so its
// event is a commit of its own: the worst case (the authorization code and
// refresh grants record inside fosite's transaction). Compare
// ns/op of the on and off variants for the ratio:
//
//	go test ./internal/e2e/ -run '^$' -bench TokenAudit -benchtime 2s
func BenchmarkTokenAudit(b *testing.B) {
	for _, backend := range backends {
		for _, mode := range []string{"off", "on"} {
			b.Run(backend+"/token/audit-"+mode, func(b *testing.B) {
				srv := benchServer(b, backend, mode == "off")
				b.SetParallelism(8)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						srv.token(b)
					}
				})
			})
			b.Run(backend+"/introspect/audit-"+mode, func(b *testing.B) {
				srv := benchServer(b, backend, mode == "off")
				tok := srv.token(b)
				b.SetParallelism(8)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						srv.introspect(b, tok)
					}
				})
			})
		}
	}
}

// BenchmarkTokenAuditRatio alternates requests to a server with auditing
// off and one with it on, so both see the same machine load, and reports
// the mean latency of each and their ratio (on/off):
//
//	go test ./internal/e2e/ -run '^$' -bench TokenAuditRatio
func BenchmarkTokenAuditRatio(b *testing.B) {
	for _, backend := range backends {
		for _, call := range []string{"token", "introspect"} {
			b.Run(backend+"/"+call, func(b *testing.B) {
				off, on := benchServer(b, backend, true), benchServer(b, backend, false)
				offTok, onTok := off.token(b), on.token(b)
				do := func(s *benchSrv, tok string) time.Duration {
					start := time.Now()
					if call == "token" {
						s.token(b)
					} else {
						s.introspect(b, tok)
					}
					return time.Since(start)
				}
				var dOff, dOn time.Duration
				b.ResetTimer()
				for i := range b.N {
					if i%2 == 0 {
						dOff += do(off, offTok)
						dOn += do(on, onTok)
					} else {
						dOn += do(on, onTok)
						dOff += do(off, offTok)
					}
				}
				b.ReportMetric(float64(dOff.Nanoseconds())/float64(b.N), "off-ns/req")
				b.ReportMetric(float64(dOn.Nanoseconds())/float64(b.N), "on-ns/req")
				b.ReportMetric(float64(dOn)/float64(dOff), "on/off")
			})
		}
	}
}

type benchSrv struct {
	issuer     string
	id, secret string
}

func benchServer(b *testing.B, backend string, noAudit bool) *benchSrv {
	b.Helper()
	pub := httptest.NewUnstartedServer(nil)
	issuer := "http://" + pub.Listener.Addr().String()
	issuer = strings.Replace(issuer, "127.0.0.1", "localhost", 1)
	cfg := config.Defaults()
	cfg.Issuer = issuer
	secret := func() string {
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		return base64.StdEncoding.EncodeToString(k)
	}
	cfg.Secrets = config.Secrets{GlobalSecret: secret(), ClientSecretPepper: secret(), KeyEncryptionKey: secret()}
	cfg.Admin.BootstrapToken = "bench-" + secret()
	cfg.RateLimits.Disabled = true // a load test, not an attack
	cfg.Keys.Prepublish = 0
	dev := true
	if backend == "postgres" {
		cfg.Database.URL = testdb.URL(b)
		dev = false
	}
	srv, err := server.New(context.Background(), server.Options{Config: cfg, Dev: dev, NoAudit: noAudit,
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	srv.Start()
	pub.Config.Handler = srv.PublicHandler()
	pub.Start()
	adm := httptest.NewServer(srv.AdminHandler())
	b.Cleanup(func() { pub.Close(); adm.Close(); srv.Close() })

	meta, _ := json.Marshal(map[string]any{"client_name": "bench", "grant_types": []string{"client_credentials"},
		"redirect_uris": []string{}, "scope": "", "token_endpoint_auth_method": "client_secret_basic"})
	req, _ := http.NewRequest("POST", adm.URL+"/admin/v1/clients", bytes.NewReader(meta))
	req.Header.Set("Authorization", "Bearer "+cfg.Admin.BootstrapToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 201 {
		b.Fatalf("register client: %d %v", resp.StatusCode, err)
	}
	return &benchSrv{issuer: issuer, id: out.ClientID, secret: out.ClientSecret}
}

func (s *benchSrv) post(b *testing.B, path string, v url.Values) []byte {
	req, _ := http.NewRequest("POST", s.issuer+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(s.id), url.QueryEscape(s.secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Error(err)
		return nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		b.Errorf("%s: %d %s", path, resp.StatusCode, raw)
	}
	return raw
}

func (s *benchSrv) token(b *testing.B) string {
	var out struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal(s.post(b, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}}), &out)
	return out.AccessToken
}

func (s *benchSrv) introspect(b *testing.B, tok string) {
	var out struct {
		Active bool `json:"active"`
	}
	_ = json.Unmarshal(s.post(b, "/oauth2/introspect", url.Values{"token": {tok}}), &out)
	if !out.Active {
		b.Error("token inactive")
	}
}
