package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// TestNoSecretsInLogs runs a full journey (enrolment, sign-in, token
// exchange, refresh, userinfo, introspection) on both stores and scans
// everything the server logged for the secrets that went by: the client
// secret, the invite code, the authorization code, the access, refresh and
// ID tokens, the session cookie values and the WebAuthn challenge.
func TestNoSecretsInLogs(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			secrets := map[string]string{}
			uid := e.newPerson("Rosalind", "Franklin")
			code := e.invite(uid)
			secrets["invite code"] = code
			b := e.browser(e.device(true))
			b.mustEnrol(code, 3)

			r := e.newRP("client_secret_basic", nil)
			secrets["client secret"] = r.secret
			c := e.client(r)

			// Sign in by hand to see the challenge.
			state, nonce, verifier := randID(), randID(), oauth2.GenerateVerifier()
			loc := b.follow(c.conf.AuthCodeURL(state, oidcNonce(nonce), oauth2.S256ChallengeOption(verifier)))
			flow := loc.Query().Get("flow")
			st, opts := b.postJSON("/webauthn/login/begin", map[string]string{"flow": flow})
			if st != 200 {
				t.Fatalf("login begin: %d %s", st, opts)
			}
			var o struct {
				PublicKey struct {
					Challenge string `json:"challenge"`
				} `json:"publicKey"`
				Challenge string `json:"challenge"`
			}
			_ = json.Unmarshal(opts, &o)
			secrets["challenge"] = o.PublicKey.Challenge + o.Challenge
			as, err := b.dev.Assert(opts)
			if err != nil {
				t.Fatal(err)
			}
			st, raw := b.postJSON("/webauthn/login/finish?flow="+url.QueryEscape(flow), json.RawMessage(as))
			if st != 200 {
				t.Fatalf("login finish: %d %s", st, raw)
			}
			var fin struct {
				Redirect string `json:"redirect"`
			}
			_ = json.Unmarshal(raw, &fin)
			cb := b.follow(fin.Redirect)
			secrets["authorization code"] = cb.Query().Get("code")
			tok, _, _ := c.exchange(cb, state, verifier, nonce)
			secrets["access token"] = tok.AccessToken
			secrets["refresh token"] = tok.RefreshToken
			secrets["id token"], _ = tok.Extra("id_token").(string)

			// userinfo, introspection and refresh put the tokens on the wire again.
			req, _ := http.NewRequest("GET", e.issuer+"/userinfo", nil)
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
			form := url.Values{"token": {tok.AccessToken}}
			req, _ = http.NewRequest("POST", e.issuer+"/oauth2/introspect", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(url.QueryEscape(r.id), url.QueryEscape(r.secret))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
			tok.Expiry = tok.Expiry.Add(-24 * 3600 * 1e9)
			if nt, err := c.conf.TokenSource(t.Context(), tok).Token(); err == nil {
				secrets["refreshed access token"] = nt.AccessToken
				secrets["refreshed refresh token"] = nt.RefreshToken
			}
			u, _ := url.Parse(e.issuer)
			for _, ck := range b.http.Jar.Cookies(u) {
				if len(ck.Value) >= 16 {
					secrets["cookie "+ck.Name] = ck.Value
				}
			}

			logs := e.logs.String()
			if len(logs) < 1000 {
				t.Fatalf("suspiciously little logged (%d bytes)", len(logs))
			}
			checked := 0
			for what, v := range secrets {
				if len(v) < 12 {
					continue
				}
				checked++
				// The secret itself, or its signature part (a JWT's or an
				// HMAC token's), must not appear.
				probes := []string{v}
				if i := strings.LastIndex(v, "."); i > 0 && len(v)-i > 16 {
					probes = append(probes, v[i+1:])
				}
				for _, p := range probes {
					if strings.Contains(logs, p) {
						t.Errorf("the %s appears in the server log", what)
					}
				}
			}
			if checked < 8 {
				t.Fatalf("only %d secrets collected: %v", checked, keys(secrets))
			}
		})
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func oidcNonce(n string) oauth2.AuthCodeOption { return oauth2.SetAuthURLParam("nonce", n) }

// TestNoOpenRedirect: nhsid redirects only to registered URIs, matched
// exactly, at authorize and at logout.
func TestNoOpenRedirect(t *testing.T) {
	e := newEnv(t, "memory")
	r := e.newRP("client_secret_basic", map[string]any{"post_logout_redirect_uris": []string{"https://rp.example/bye"}})
	evil := []string{
		"https://evil.example/cb",
		r.redirectURI + "/../evil",
		r.redirectURI + "?next=https://evil.example",
		r.redirectURI + "#frag",
		strings.ToUpper(r.redirectURI[:4]) + r.redirectURI[4:] + "x",
		r.redirectURI + "/",
		"//evil.example/cb",
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, uri := range evil {
		t.Run("authorize "+uri, func(t *testing.T) {
			q := url.Values{"response_type": {"code"}, "client_id": {r.id}, "redirect_uri": {uri},
				"scope": {"openid"}, "state": {"s1234567"}, "nonce": {"n1234567"},
				"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
			resp, err := hc.Get(e.issuer + "/oauth2/authorize?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if loc := resp.Header.Get("Location"); loc != "" {
				lu, _ := url.Parse(loc)
				if lu.Host != "" && !strings.HasPrefix(loc, e.issuer) {
					t.Fatalf("redirected off-site to %s for redirect_uri %s", loc, uri)
				}
			}
			if resp.StatusCode < 400 && resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("status %d for an unregistered redirect_uri", resp.StatusCode)
			}
		})
	}
	for _, uri := range []string{"https://evil.example/bye", "https://rp.example/bye/x", "https://rp.example/bye?x=1"} {
		t.Run("logout "+uri, func(t *testing.T) {
			q := url.Values{"client_id": {r.id}, "post_logout_redirect_uri": {uri}, "state": {"s"}}
			resp, err := hc.Get(e.issuer + "/oauth2/logout?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if loc := resp.Header.Get("Location"); strings.Contains(loc, "evil.example") || strings.HasPrefix(loc, uri) {
				t.Fatalf("logout redirected to %s", loc)
			}
		})
	}
}

// TestNoCachingOfSensitiveResponses: pages and token responses carry
// Cache-Control: no-store.
func TestNoCachingOfSensitiveResponses(t *testing.T) {
	e := newEnv(t, "memory")
	uid := e.newPerson("Dorothy", "Hodgkin")
	b := e.browser(e.device(true))
	code := e.invite(uid)
	enrolPage := b.get("/enrol?invite=" + url.QueryEscape(code))
	b.mustEnrol(code, 3)
	r := e.newRP("client_secret_basic", nil)
	c := e.client(r)
	state, nonce, verifier := randID(), randID(), oauth2.GenerateVerifier()
	loginURL := b.follow(c.conf.AuthCodeURL(state, oidcNonce(nonce), oauth2.S256ChallengeOption(verifier)))
	loginPage := b.get(loginURL.String())
	st, raw, redirect := b.login(loginURL)
	if st != 200 {
		t.Fatalf("login: %d %s", st, raw)
	}
	cb := b.follow(redirect)
	account := b.get("/account")

	form := url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")},
		"redirect_uri": {r.redirectURI}, "code_verifier": {verifier}}
	req, _ := http.NewRequest("POST", e.issuer+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(r.id), url.QueryEscape(r.secret))
	tokenResp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tokenResp.Body.Close()
	if tokenResp.StatusCode != 200 {
		t.Fatalf("token: %d", tokenResp.StatusCode)
	}
	tests := []struct {
		name string
		resp *http.Response
	}{
		{"enrol page", enrolPage},
		{"login page", loginPage},
		{"account page", account},
		{"token response", tokenResp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if cc := tt.resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
				t.Fatalf("Cache-Control %q (status %d)", cc, tt.resp.StatusCode)
			}
		})
	}
}

// TestInputBounds: oversized bodies and deeply nested JSON get a 4xx with
// a safe JSON message, never a 500. (Header size is the real listener's
// MaxHeaderBytes, checked against the binary in cmd/nhsid's
// TestScaleOutAcrossNodes.)
func TestInputBounds(t *testing.T) {
	e := newEnv(t, "memory")
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	deepObj := strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000)
	big := `{"flow":"` + strings.Repeat("x", 2<<20) + `"}`
	tests := []struct {
		name    string
		method  string
		url     string
		body    string
		auth    bool
		want    []int
		wantErr bool // a JSON {"error"} body is expected
	}{
		{name: "ceremony body over the limit", method: "POST", url: e.issuer + "/webauthn/login/begin", body: big, want: []int{400, 413}, wantErr: true},
		{name: "ceremony deeply nested array", method: "POST", url: e.issuer + "/webauthn/login/begin", body: deep, want: []int{400}, wantErr: true},
		{name: "ceremony deeply nested object", method: "POST", url: e.issuer + "/webauthn/register/begin", body: deepObj, want: []int{400}, wantErr: true},
		{name: "login finish deeply nested", method: "POST", url: e.issuer + "/webauthn/login/finish?flow=x", body: deepObj, want: []int{400}, wantErr: true},
		{name: "admin deeply nested", method: "POST", url: e.adm.URL + "/admin/v1/clients", body: deepObj, auth: true, want: []int{400}, wantErr: true},
		{name: "admin body over the limit", method: "POST", url: e.adm.URL + "/admin/v1/people", body: `{"given_name":"` + strings.Repeat("x", 5<<20) + `"}`, auth: true, want: []int{400, 413}, wantErr: true},
		{name: "token body over the limit", method: "POST", url: e.issuer + "/oauth2/token", body: "grant_type=" + strings.Repeat("x", 2<<20), want: []int{400, 401, 413}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, tt.url, bytes.NewReader([]byte(tt.body)))
			if strings.HasPrefix(tt.body, "{") || strings.HasPrefix(tt.body, "[") {
				req.Header.Set("Content-Type", "application/json")
			} else {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if tt.auth {
				req.Header.Set("Authorization", "Bearer "+e.adminToken)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			ok := false
			for _, w := range tt.want {
				ok = ok || resp.StatusCode == w
			}
			if !ok {
				t.Fatalf("status %d, want one of %v: %.300s", resp.StatusCode, tt.want, raw)
			}
			if tt.wantErr {
				var body struct {
					Error   string `json:"error"`
					Message string `json:"message"`
				}
				if err := json.Unmarshal(raw, &body); err != nil || body.Error == "" {
					t.Fatalf("not a JSON error: %.300s", raw)
				}
				if strings.Contains(body.Message, "goroutine") || strings.Contains(body.Message, ".go:") {
					t.Fatalf("message leaks internals: %q", body.Message)
				}
			}
		})
	}
}
