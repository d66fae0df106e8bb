package idp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nhsid/nhsid/idp"
)

// TestRevokeKey: an emergency revocation takes the key out of JWKS at
// once; JWT access tokens it signed stop working at introspection and
// userinfo; a successor signs immediately, even with a pre-published key
// pending.
func TestRevokeKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	person := e.person()
	c, sec := e.webClient(func(c *idp.Client) { c.AccessTokenFormat = "jwt" })

	u := e.login(c.ID, nil, session(person.UID, 3, time.Now()))
	status, tok := e.token(c.ID, sec, url.Values{"grant_type": {"authorization_code"}, "code": {u.Query().Get("code")}, "redirect_uri": {redirectURI}})
	if status != http.StatusOK {
		t.Fatalf("token %d %v", status, tok)
	}
	at := tok["access_token"].(string)
	kid := kidOf(t, at)

	introspect := func() map[string]any {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+idp.PathIntrospect, strings.NewReader(url.Values{"token": {at}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(c.ID, sec)
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	userinfo := func() int {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+idp.PathUserinfo, nil)
		req.Header.Set("Authorization", "Bearer "+at)
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := introspect(); got["active"] != true {
		t.Fatalf("before revocation: %v", got)
	}
	if st := userinfo(); st != http.StatusOK {
		t.Fatalf("userinfo before revocation: %d", st)
	}

	// A pending pre-published key must be brought forward.
	if err := e.p.RotateKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.RevokeKey(ctx, kid, "operator:test"); err != nil {
		t.Fatal(err)
	}
	if len(e.jwks().Key(kid)) != 0 {
		t.Fatal("revoked key still in JWKS")
	}
	if got := introspect(); got["active"] == true {
		t.Fatalf("introspection after revocation: %v", got)
	}
	if st := userinfo(); st != http.StatusUnauthorized {
		t.Fatalf("userinfo after revocation: %d, want 401", st)
	}
	raw, err := e.p.SignForTest(ctx, map[string]any{"sub": "x"}, idp.AlgRS256)
	if err != nil {
		t.Fatalf("no signer after revocation: %v", err)
	}
	if k := kidOf(t, raw); k == kid || len(e.jwks().Key(k)) != 1 {
		t.Fatalf("successor %s not published or is the revoked key", k)
	}

	tests := []struct {
		name string
		kid  string
		want error
	}{
		{name: "again is a no-op", kid: kid},
		{name: "unknown kid", kid: "rs256-nope", want: idp.ErrKeyNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.p.RevokeKey(ctx, tt.kid, "operator:test")
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}
