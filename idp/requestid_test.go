package idp_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/nhsid/nhsid/idp"
)

// TestGrantIDsAreTimeOrdered: the grants nhsid issues (a client's
// client_credentials token, a person's authorization code and the tokens
// it buys) are named with version 7 UUIDs, which start with the time, so
// that new grants' token rows go together at the end of the request_id
// index instead of at random places in it.
func TestGrantIDsAreTimeOrdered(t *testing.T) {
	e := newEnv(t)
	requestOf := func(accessToken string) uuid.UUID {
		t.Helper()
		sig := accessToken[strings.LastIndex(accessToken, ".")+1:]
		req, err := e.store.GetAccessTokenSession(context.Background(), sig, idp.NewSession())
		if err != nil {
			t.Fatalf("access token's row: %v", err)
		}
		id, err := uuid.Parse(req.GetID())
		if err != nil {
			t.Fatalf("request id %q: %v", req.GetID(), err)
		}
		return id
	}

	id, sec := e.registerClient(&idp.Client{GrantTypes: []string{"client_credentials"}, Scope: "nhsid:admin",
		Audience: []string{"nhsid-admin"}, TokenEndpointAuthMethod: idp.AuthClientSecretBasic})
	var last uuid.UUID
	for i := range 3 {
		status, tok := e.token(id, sec, url.Values{"grant_type": {"client_credentials"}, "scope": {"nhsid:admin"}})
		if status != http.StatusOK {
			t.Fatalf("token: %d %v", status, tok)
		}
		got := requestOf(tok["access_token"].(string))
		if got.Version() != 7 {
			t.Fatalf("client_credentials grant %s is a version %d UUID", got, got.Version())
		}
		if i > 0 && got.String() <= last.String() {
			t.Fatalf("grant %s sorts before the earlier %s", got, last)
		}
		last = got
	}

	c, sec := e.webClient(nil)
	cb := e.login(c.ID, nil, session(e.person().UID, 3, e.clock.Now()))
	status, tok := e.token(c.ID, sec, url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {redirectURI}})
	if status != http.StatusOK {
		t.Fatalf("code exchange: %d %v", status, tok)
	}
	if got := requestOf(tok["access_token"].(string)); got.Version() != 7 {
		t.Fatalf("authorization code grant %s is a version %d UUID", got, got.Version())
	}
}
