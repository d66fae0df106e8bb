package idp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"

	"github.com/nhsid/nhsid/idp"
)

func kidOf(t *testing.T, raw string) string {
	t.Helper()
	tok, err := josejwt.ParseSigned(raw)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Headers[0].KeyID
}

func TestJWKSETag(t *testing.T) {
	e := newEnv(t)
	resp := e.get(idp.PathJWKS)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	etag := resp.Header.Get("ETag")
	cc := resp.Header.Get("Cache-Control")
	if etag == "" || !strings.Contains(cc, "max-age=") {
		t.Fatalf("ETag %q Cache-Control %q", etag, cc)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("%d keys, want one per algorithm (2)", len(set.Keys))
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || k.KeyID == "" || k.Use != "sig" || k.Algorithm == "" {
			t.Fatalf("bad published key %+v", k)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+idp.PathJWKS, nil)
	req.Header.Set("If-None-Match", etag)
	resp2, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusNotModified {
		t.Fatalf("conditional GET: %d, want 304", resp2.StatusCode)
	}
	if err := e.p.RotateKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.get(idp.PathJWKS).Header.Get("ETag") == etag {
		t.Fatal("ETag unchanged after rotation")
	}
}

func TestKeyRotation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	person := e.person()
	c, sec := e.webClient(nil)

	// An ID token signed by the first key.
	u := e.login(c.ID, nil, session(person.UID, 3, time.Now()))
	_, tok := e.token(c.ID, sec, url.Values{"grant_type": {"authorization_code"}, "code": {u.Query().Get("code")}, "redirect_uri": {redirectURI}})
	oldIDToken := tok["id_token"].(string)
	oldKID := kidOf(t, oldIDToken)

	if err := e.p.RotateKeys(ctx); err != nil {
		t.Fatal(err)
	}
	set := e.jwks()
	if len(set.Keys) != 4 {
		t.Fatalf("%d keys after rotation, want 4", len(set.Keys))
	}
	// Pre-published: the new key does not sign yet.
	raw, err := e.p.SignForTest(ctx, map[string]any{"sub": "x"}, idp.AlgRS256)
	if err != nil {
		t.Fatal(err)
	}
	if kidOf(t, raw) != oldKID {
		t.Fatal("new key signs before its pre-publication period ended")
	}

	e.clock.Add(time.Hour + time.Second)
	raw, err = e.p.SignForTest(ctx, map[string]any{"sub": "x"}, idp.AlgRS256)
	if err != nil {
		t.Fatal(err)
	}
	newKID := kidOf(t, raw)
	if newKID == oldKID {
		t.Fatal("new key not active after pre-publication")
	}
	if len(e.jwks().Key(oldKID)) != 1 {
		t.Fatal("retired key left JWKS too early")
	}
	if err := e.p.VerifyForTest(ctx, oldIDToken); err != nil {
		t.Fatalf("old token no longer verifies: %v", err)
	}

	// id_token_hint signed by the retired key is still accepted.
	e.authn.setSession(session(person.UID, 3, time.Now().Add(-time.Second)))
	u = expectRedirect(t, e.get(authorizeQuery(c.ID, url.Values{"prompt": {"none"}, "id_token_hint": {oldIDToken}})))
	if u.Query().Get("code") == "" {
		t.Fatalf("id_token_hint from retired key: %s", u)
	}
	_, tok = e.token(c.ID, sec, url.Values{"grant_type": {"authorization_code"}, "code": {u.Query().Get("code")}, "redirect_uri": {redirectURI}})
	if kidOf(t, tok["id_token"].(string)) != newKID {
		t.Fatal("ID token not signed by the new key")
	}

	// Once every token it signed has expired, the old key leaves JWKS.
	e.clock.Add(time.Hour + time.Minute)
	if err := e.p.ReloadKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if len(e.jwks().Key(oldKID)) != 0 {
		t.Fatal("expired key still published")
	}
	if len(e.jwks().Key(newKID)) != 1 {
		t.Fatal("active key not published")
	}
}

func TestKeysSharedAcrossReplicas(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cfg := idp.Config{Issuer: e.issuer, GlobalSecret: secret('g'), SecretPepper: secret('p'), KEK: secret('k'), SigningAlgs: []string{idp.AlgRS256, idp.AlgES256}}
	p2, err := idp.New(cfg, idp.Deps{Store: e.store, People: e.store, Authn: e.authn, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := e.store.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("second replica created keys: %d", len(keys))
	}
	raw, err := p2.SignForTest(ctx, map[string]any{"sub": "x"}, idp.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.VerifyForTest(ctx, raw); err != nil {
		t.Fatalf("replica token does not verify: %v", err)
	}
	cfg.KEK = secret('K')
	if _, err := idp.New(cfg, idp.Deps{Store: e.store, People: e.store, Authn: e.authn}); err == nil {
		t.Fatal("wrong KEK accepted")
	}
}

func TestPerClientSigningAlgAndJWTAccessToken(t *testing.T) {
	e := newEnv(t)
	person := e.person()
	c, sec := e.webClient(func(c *idp.Client) {
		c.IDTokenSignedResponseAlg = idp.AlgES256
		c.AccessTokenFormat = "jwt"
	})
	u := e.login(c.ID, url.Values{"acr_values": {"AAL2_ANY"}}, session(person.UID, 2, time.Now()))
	status, tok := e.token(c.ID, sec, url.Values{"grant_type": {"authorization_code"}, "code": {u.Query().Get("code")}, "redirect_uri": {redirectURI}})
	if status != http.StatusOK {
		t.Fatalf("token %d %v", status, tok)
	}
	hdr, claims := e.verifyJWT(tok["id_token"].(string))
	if hdr.Algorithm != "ES256" {
		t.Fatalf("id_token alg %s", hdr.Algorithm)
	}
	if claims["acr"] != "AAL2_ANY" || claims["authentication_assurance_level"] != "2" {
		t.Fatalf("claims %v", claims)
	}
	if amr, _ := json.Marshal(claims["amr"]); string(amr) != `["swk","mfa"]` {
		t.Errorf("amr %s", amr)
	}
	ahdr, at := e.verifyJWT(tok["access_token"].(string))
	if ahdr.ExtraHeaders["typ"] != "at+jwt" || at["client_id"] != c.ID || at["sub"] != person.UID || at["iss"] != e.issuer || at["aud"] == nil {
		t.Fatalf("access token %v %v", ahdr, at)
	}
	// The JWT access token works at userinfo.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+idp.PathUserinfo, nil)
	req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("userinfo with JWT access token: %d", resp.StatusCode)
	}
}

func TestPrivateKeyJWT(t *testing.T) {
	e := newEnv(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, KeyID: "rp1", Algorithm: "RS256", Use: "sig"}
	id, _ := e.registerClient(&idp.Client{GrantTypes: []string{"client_credentials"}, TokenEndpointAuthMethod: idp.AuthPrivateKeyJWT,
		JWKS: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}}})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "rp1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertion := func(aud string, jti string) string {
		raw, err := josejwt.Signed(signer).Claims(josejwt.Claims{Issuer: id, Subject: id, Audience: josejwt.Audience{aud}, ID: jti,
			Expiry: josejwt.NewNumericDate(time.Now().Add(time.Minute)), IssuedAt: josejwt.NewNumericDate(time.Now())}).CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	tests := []struct {
		name string
		aud  string
		jti  string
		ok   bool
		err  string // the error code when not ok
	}{
		{"aud token endpoint", e.issuer + idp.PathToken, "jti-1", true, ""},
		{"aud issuer", e.issuer, "jti-2", true, ""},
		{"replayed jti", e.issuer, "jti-2", false, "jti_known"},
		{"aud elsewhere", "https://other.example/token", "jti-3", false, "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, tok := e.token(id, "", url.Values{"grant_type": {"client_credentials"},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
				"client_assertion":      {assertion(tt.aud, tt.jti)}})
			if (status == http.StatusOK) != tt.ok {
				t.Fatalf("status %d %v, want ok=%v", status, tok, tt.ok)
			}
			if !tt.ok && tok["error"] != tt.err {
				t.Fatalf("error %v, want %s", tok, tt.err)
			}
		})
	}
	// Concurrent requests presenting one jti: exactly one is served.
	one := assertion(e.issuer+idp.PathToken, "jti-race")
	const n = 8
	form := url.Values{"grant_type": {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {one}}.Encode()
	statuses := make(chan int, n)
	for range n {
		go func() {
			resp, err := e.http.Post(e.srv.URL+idp.PathToken, "application/x-www-form-urlencoded", strings.NewReader(form))
			if err != nil {
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	served := 0
	for range n {
		switch st := <-statuses; st {
		case http.StatusOK:
			served++
		case http.StatusBadRequest:
		default:
			t.Errorf("concurrent request: status %d", st)
		}
	}
	if served != 1 {
		t.Fatalf("%d of %d concurrent requests with one jti were served, want 1", served, n)
	}
}

func TestRunRotatesOnSchedule(t *testing.T) {
	e := newEnv(t, func(c *idp.Config, _ *idp.Deps) {
		c.KeyReloadInterval = 5 * time.Millisecond
		c.KeyRotationInterval = 24 * time.Hour
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	e.clock.Add(25 * time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		keys, err := e.store.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) >= 4 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("Run did not rotate the keys")
}
