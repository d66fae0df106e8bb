package e2e

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nhsid/nhsid/internal/config"
	"github.com/nhsid/nhsid/internal/server"
)

// FuzzClientRegistration posts arbitrary client metadata to the admin API
// (POST /admin/v1/clients). Whatever the body, the answer is a 201 with a
// generated secret of at least 256 bits, or a 4xx with a JSON error;
// never a 5xx. The seed corpus runs in CI.
func FuzzClientRegistration(f *testing.F) {
	seeds := []string{
		`{"client_name":"a","redirect_uris":["https://rp.example/cb"],"grant_types":["authorization_code"],"token_endpoint_auth_method":"client_secret_basic","scope":"openid"}`,
		`{"client_name":"b","redirect_uris":["https://rp.example/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}}`,
		`{"client_name":"c","redirect_uris":["http://localhost/cb"],"token_endpoint_auth_method":"none","nhsid_required_aal":5}`,
		`{"client_name":"d","redirect_uris":["javascript:alert(1)"]}`,
		`{"client_name":"e","redirect_uris":["https://rp.example/cb#x"],"grant_types":["implicit"]}`,
		`{"client_name":"f","grant_types":["client_credentials"],"client_secret":"chosen-by-user"}`,
		`{"redirect_uris":"not-a-list","nhsid_allowed_roles":[1,2,3],"nhsid_access_token_format":"jwt"}`,
		`{"client_name":"g","redirect_uris":["https://rp.example/cb"],"id_token_signed_response_alg":"none","require_pushed_authorization_requests":true}`,
		`{"client_name":"h","jwks_uri":"http://169.254.169.254/latest","redirect_uris":["https://rp.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}`,
		`{"client_name":"` + strings.Repeat("x", 5000) + `"}`,
		`[]`, `null`, `{`, `{"client_name":{"a":{"b":{"c":[]}}}}`, "",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	cfg := config.Defaults()
	cfg.Issuer = "http://localhost:8080"
	cfg.Admin.BootstrapToken = "fuzz-admin-token-0123456789"
	cfg.RateLimits.Disabled = true
	srv, err := server.New(context.Background(), server.Options{Config: cfg, Dev: true, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(srv.Close)
	h := srv.AdminHandler()
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/admin/v1/clients", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+cfg.Admin.BootstrapToken)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("status %d, not JSON: %s", rec.Code, rec.Body)
		}
		switch {
		case rec.Code == http.StatusCreated:
			if id, _ := out["client_id"].(string); id == "" {
				t.Fatalf("201 without client_id: %s", rec.Body)
			}
			if sec, ok := out["client_secret"].(string); ok && len(sec) < 43 {
				t.Fatalf("client secret of %d characters: under 256 bits", len(sec))
			}
		case rec.Code >= 400:
			if e, _ := out["error"].(string); e == "" {
				t.Fatalf("%d without an error code: %s", rec.Code, rec.Body)
			}
		}
	})
}
