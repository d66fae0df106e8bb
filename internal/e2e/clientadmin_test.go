package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v3"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/config"
)

// ccToken asks for a client_credentials token with a client secret and
// returns the HTTP status and the access token, if any.
func (e *env) ccToken(id, secret string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.pub.URL+"/oauth2/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.AccessToken
}

// ccStatus is ccToken's status.
func (e *env) ccStatus(id, secret string) int {
	e.t.Helper()
	status, _ := e.ccToken(id, secret)
	return status
}

// adminStatus calls the admin API with a raw body and returns the status
// and the decoded error code, if any.
func (e *env) adminStatus(method, path, body string) (int, string) {
	e.t.Helper()
	status, raw := e.adminCall(method, path, "application/json", []byte(body))
	var out struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(raw, &out)
	return status, out.Error
}

// TestClientAdmin: an operator changes a registered client through the
// admin API: its metadata (validated as at registration), its secret
// (rotated with an overlap that the operator ends) and whether it may
// be used at all; every change is a client.changed event.
func TestClientAdmin(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			// The refused secrets below would trip the limiter on failed
			// client authentication (ratelimit_test.go covers it).
			e := newEnv(t, backend, func(c *config.Config) { c.RateLimits.Disabled = true })
			var reg struct {
				ClientID     string `json:"client_id"`
				ClientSecret string `json:"client_secret"`
			}
			e.admin("POST", "/admin/v1/clients", map[string]any{"client_name": "service", "grant_types": []string{"client_credentials"},
				"token_endpoint_auth_method": "client_secret_basic", "scope": "a"}, 201, &reg)
			id, first := reg.ClientID, reg.ClientSecret
			path := "/admin/v1/clients/" + url.PathEscape(id)
			mustEqual(t, "first secret", e.ccStatus(id, first), 200)

			// Metadata: the fields given replace the client's, the rest stay.
			var got map[string]any
			e.admin("PATCH", path, map[string]any{"client_name": "renamed", "scope": "a b"}, 200, &got)
			mustEqual(t, "name", got["client_name"], "renamed")
			mustEqual(t, "scope", got["scope"], "a b")
			mustEqual(t, "auth method kept", got["token_endpoint_auth_method"], "client_secret_basic")
			if _, ok := got["client_secret"]; ok {
				t.Fatal("a metadata change answered a secret")
			}
			e.admin("GET", path, nil, 200, &got)
			mustEqual(t, "name after", got["client_name"], "renamed")
			mustEqual(t, "secret kept", e.ccStatus(id, first), 200)

			// Refused changes change nothing.
			for _, tc := range []struct{ body, code string }{
				{`{"client_id":"other"}`, "invalid_client_metadata"},
				{`{"no_such_field":1}`, "invalid_client_metadata"},
				{`{"scope":7}`, "invalid_client_metadata"},
				{`{"grant_types":["authorization_code"],"redirect_uris":["http://rp.example/cb"]}`, "invalid_client_metadata"},
				{`{"token_endpoint_auth_method":"private_key_jwt"}`, "invalid_client_metadata"}, // no keys
				{`{}`, "invalid_client_metadata"},
				{`[1]`, "invalid_request"},
			} {
				if status, code := e.adminStatus("PATCH", path, tc.body); status != 400 || code != tc.code {
					t.Errorf("PATCH %s: %d %s, want 400 %s", tc.body, status, code, tc.code)
				}
			}
			if status, _ := e.adminStatus("PATCH", "/admin/v1/clients/no-such-client", `{"client_name":"x"}`); status != 404 {
				t.Errorf("PATCH of an unknown client: %d, want 404", status)
			}
			e.admin("GET", path, nil, 200, &got)
			mustEqual(t, "scope after refusals", got["scope"], "a b")

			// Rotation: both secrets work until the overlap ends.
			var rot struct {
				Secret string `json:"client_secret"`
			}
			e.admin("POST", path+"/secret", nil, 200, &rot)
			second := rot.Secret
			if second == "" || second == first {
				t.Fatalf("rotation answered secret %q", second)
			}
			mustEqual(t, "old secret in the overlap", e.ccStatus(id, first), 200)
			mustEqual(t, "new secret", e.ccStatus(id, second), 200)
			e.admin("DELETE", path+"/secret/previous", nil, 204, nil)
			mustEqual(t, "old secret after the overlap", e.ccStatus(id, first), 401)
			mustEqual(t, "new secret after the overlap", e.ccStatus(id, second), 200)
			if status, _ := e.adminStatus("DELETE", path+"/secret/previous", ""); status != 404 {
				t.Errorf("ending an overlap twice: %d, want 404", status)
			}
			// A second rotation ends the first one's overlap at once.
			e.admin("POST", path+"/secret", nil, 200, &rot)
			third := rot.Secret
			e.admin("POST", path+"/secret", nil, 200, &rot)
			mustEqual(t, "secret two rotations back", e.ccStatus(id, second), 401)
			mustEqual(t, "previous secret", e.ccStatus(id, third), 200)
			fourth := rot.Secret
			mustEqual(t, "current secret", e.ccStatus(id, fourth), 200)

			// Disabled: refused everywhere, its tokens inactive, until enabled again.
			status, tok := e.ccToken(id, fourth)
			mustEqual(t, "token", status, 200)
			mustEqual(t, "token before", introspect(t, e, tok), true)
			e.admin("PATCH", path, map[string]any{"disabled": true}, 200, &got)
			mustEqual(t, "disabled client", e.ccStatus(id, fourth), 401)
			mustEqual(t, "token of a disabled client", introspect(t, e, tok), false)
			e.admin("PATCH", path, map[string]any{"disabled": false}, 200, &got)
			mustEqual(t, "enabled again", e.ccStatus(id, fourth), 200)
			mustEqual(t, "token after", introspect(t, e, tok), true)

			// A move to keys drops the secrets; a move back issues a new one.
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			e.admin("PATCH", path, map[string]any{"token_endpoint_auth_method": "private_key_jwt", "token_endpoint_auth_signing_alg": "ES256",
				"jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}}, 200, &got)
			mustEqual(t, "secret after the move to keys", e.ccStatus(id, fourth), 401)
			if status, _ := e.adminStatus("POST", path+"/secret", ""); status != 400 {
				t.Errorf("rotating the secret of a key client: %d, want 400", status)
			}
			var back struct {
				Secret string `json:"client_secret"`
			}
			e.admin("PATCH", path, map[string]any{"token_endpoint_auth_method": "client_secret_basic", "jwks": nil, "token_endpoint_auth_signing_alg": nil}, 200, &back)
			if back.Secret == "" {
				t.Fatal("the move back to a secret answered none")
			}
			mustEqual(t, "secret after the move back", e.ccStatus(id, back.Secret), 200)
			mustEqual(t, "secret from before the move", e.ccStatus(id, fourth), 401)

			// The trail: one client.changed per change, never a secret.
			var page auditPage
			e.admin("GET", "/admin/v1/audit?limit=100&type=client.changed&client="+url.QueryEscape(id), nil, 200, &page)
			var changes []string
			issued := 0
			for _, ev := range page.Items {
				mustEqual(t, "event type", ev.Type, audit.ClientChanged)
				mustEqual(t, "event actor", ev.Actor, "operator:bootstrap")
				changes = append(changes, ev.Detail["change"].(string))
				if ev.Detail["new_client_credential"] == true {
					issued++
				}
				raw, _ := json.Marshal(ev)
				for _, s := range []string{first, second, third, fourth, back.Secret} {
					if bytes.Contains(raw, []byte(s)) {
						t.Fatalf("a client.changed event holds a secret: %s", raw)
					}
				}
			}
			slices.Sort(changes)
			// renamed, disabled, enabled, to keys, back to a secret
			want := []string{"metadata", "metadata", "metadata", "metadata", "metadata",
				"secret_overlap_ended", "secret_rotated", "secret_rotated", "secret_rotated"}
			if !slices.Equal(changes, want) {
				t.Fatalf("client.changed events %v, want %v", changes, want)
			}
			mustEqual(t, "changes that issued a secret", issued, 1)
			e.admin("GET", "/admin/v1/audit?type=client.registered&client="+url.QueryEscape(id), nil, 200, &page)
			if len(page.Items) != 1 || page.Items[0].Actor != "operator:bootstrap" {
				t.Fatalf("client.registered events %+v, want one by the operator", page.Items)
			}
		})
	}
}
