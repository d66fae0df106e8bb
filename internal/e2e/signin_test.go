package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestSignIn walks the clinician journey on both stores: enrol through an
// invite, sign in to an RP with private_key_jwt, verify the ID token through
// discovery/JWKS, read userinfo, refresh with rotation and reuse detection,
// SSO to a second client, prompt=none and max_age.
func TestSignIn(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			uid := e.newPerson("Grace", "Hopper")
			b := e.newBrowserFor(uid)

			rp1 := e.newRP("private_key_jwt", nil)
			c1 := e.client(rp1)
			cb, state, verifier, nonce := b.signIn(c1)
			tok, idt, claims := c1.exchange(cb, state, verifier, nonce)

			mustEqual(t, "sub", idt.Subject, uid)
			mustEqual(t, "nhsid_useruid", claims["nhsid_useruid"], uid)
			mustEqual(t, "acr", claims["acr"], "AAL3_ANY")
			mustEqual(t, "amr", claims["amr"], []any{"hwk", "mfa"})
			mustEqual(t, "authentication_assurance_level", claims["authentication_assurance_level"], "3")
			mustEqual(t, "id_assurance_level", claims["id_assurance_level"], "3")
			if s, _ := claims["sid"].(string); s == "" {
				t.Fatal("no sid claim")
			}
			if _, ok := claims["auth_time"]; !ok {
				t.Fatal("no auth_time claim")
			}

			// userinfo through the RP library.
			ui, err := c1.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("userinfo: %v", err)
			}
			var uic map[string]any
			_ = ui.Claims(&uic)
			mustEqual(t, "userinfo sub", uic["sub"], uid)
			mustEqual(t, "family_name", uic["family_name"], "Hopper")
			mustEqual(t, "email", uic["email"], "grace@example.nhs.uk")
			mustEqual(t, "gmc_id", uic["gmc_id"], "7654321")

			// Refresh rotates; a use within the grace period gets one
			// fresh pair; any later reuse revokes the whole grant.
			if !introspect(t, e, tok.AccessToken) {
				t.Fatal("fresh access token inactive at introspection")
			}
			if tok.RefreshToken == "" {
				t.Fatal("no refresh token")
			}
			r1 := tok.RefreshToken
			t2 := refresh(t, c1, r1)
			if t2.RefreshToken == r1 || t2.RefreshToken == "" {
				t.Fatal("refresh token did not rotate")
			}
			t3 := refresh(t, c1, r1) // within grace: one fresh pair
			if _, err := refreshErr(c1, r1); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
				t.Fatalf("third use of a rotated refresh token: want invalid_grant, got %v", err)
			}
			for name, at := range map[string]string{"t2": t2.AccessToken, "t3": t3.AccessToken} {
				if active := introspect(t, e, at); active {
					t.Fatalf("%s access token still active after refresh reuse", name)
				}
			}
			if _, err := refreshErr(c1, t3.RefreshToken); err == nil {
				t.Fatal("grant not revoked after refresh reuse")
			}

			// SSO: a second client signs in without a ceremony.
			rp2 := e.newRP("client_secret_basic", nil)
			c2 := e.client(rp2)
			cb2, st2, v2, n2 := b.signInNoLogin(c2)
			_, idt2, claims2 := c2.exchange(cb2, st2, v2, n2)
			mustEqual(t, "sso sub", idt2.Subject, uid)
			mustEqual(t, "sso sid", claims2["sid"], claims["sid"])

			// prompt=none with a session: a code; without: login_required.
			cb3, st3, v3, n3 := b.signInNoLogin(c2, oauth2.SetAuthURLParam("prompt", "none"))
			c2.exchange(cb3, st3, v3, n3)
			stranger := e.browser(e.device(true))
			loc := stranger.follow(c2.conf.AuthCodeURL(randID(), oauth2.SetAuthURLParam("prompt", "none"), oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			if !strings.HasPrefix(loc.String(), rp2.redirectURI) || loc.Query().Get("error") != "login_required" {
				t.Fatalf("prompt=none without a session: got %s", loc)
			}

			// max_age: an old sign-in forces a new ceremony.
			// (auth_time has whole seconds: 2.1 s is always more than 1.)
			time.Sleep(2100 * time.Millisecond)
			loc = b.follow(c2.conf.AuthCodeURL(randID(), oauth2.SetAuthURLParam("max_age", "1"), oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			if loc.Path != "/login" {
				t.Fatalf("max_age=1 after 2 s: want a new login, got %s", loc)
			}
			cb4, st4, v4, n4 := b.signIn(c2, oauth2.SetAuthURLParam("max_age", "60"))
			_, _, claims4 := c2.exchange(cb4, st4, v4, n4)
			if at, _ := claims4["auth_time"].(float64); int64(at) < time.Now().Add(-60*time.Second).Unix() {
				t.Fatalf("auth_time %v older than max_age", at)
			}
		})
	}
}

// signInNoLogin is signIn that fails if a ceremony is asked for.
func (b *browser) signInNoLogin(c *oidcClient, opts ...oauth2.AuthCodeOption) (*url.URL, string, string, string) {
	b.e.t.Helper()
	state, nonce, verifier := randID(), randID(), oauth2.GenerateVerifier()
	opts = append(opts, oauthNonce(nonce), oauth2.S256ChallengeOption(verifier))
	loc := b.follow(c.conf.AuthCodeURL(state, opts...))
	if !strings.HasPrefix(loc.String(), c.rp.redirectURI) {
		b.e.t.Fatalf("expected SSO straight to the RP, got %s", loc)
	}
	return loc, state, verifier, nonce
}

func oauthNonce(n string) oauth2.AuthCodeOption { return oauth2.SetAuthURLParam("nonce", n) }

func refreshErr(c *oidcClient, rt string) (*oauth2.Token, error) {
	ctx := context.Background()
	v := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	return tokenRequest(ctx, c, v)
}

func refresh(t *testing.T, c *oidcClient, rt string) *oauth2.Token {
	t.Helper()
	tok, err := refreshErr(c, rt)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	return tok
}

// tokenRequest posts to the token endpoint with the client's authentication.
func tokenRequest(ctx context.Context, c *oidcClient, v url.Values) (*oauth2.Token, error) {
	req, _ := http.NewRequestWithContext(ctx, "POST", c.conf.Endpoint.TokenURL, strings.NewReader(""))
	if c.rp.key != nil {
		v.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		v.Set("client_assertion", c.rp.assertion(c.conf.Endpoint.TokenURL))
	} else if c.rp.secret != "" {
		req.SetBasicAuth(url.QueryEscape(c.rp.id), url.QueryEscape(c.rp.secret))
	} else {
		v.Set("client_id", c.rp.id)
	}
	req.Body = io.NopCloser(strings.NewReader(v.Encode()))
	req.ContentLength = int64(len(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, &tokenError{status: resp.StatusCode, body: string(raw)}
	}
	var out struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int    `json:"expires_in"`
		IDToken      string `json:"id_token"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	tok := &oauth2.Token{AccessToken: out.AccessToken, RefreshToken: out.RefreshToken, TokenType: out.TokenType}
	return tok.WithExtra(map[string]any{"id_token": out.IDToken}), nil
}

type tokenError struct {
	status int
	body   string
}

func (e *tokenError) Error() string { return e.body }

// introspect asks whether a token is active, authenticating as a separate
// resource-server client with client_secret_basic.
func introspect(t *testing.T, e *env, token string) bool {
	t.Helper()
	if e.resourceServer == nil {
		e.resourceServer = e.newRP("client_secret_basic", map[string]any{"grant_types": []string{"client_credentials"}, "redirect_uris": []string{}, "scope": ""})
	}
	v := url.Values{"token": {token}}
	req, _ := http.NewRequest("POST", e.issuer+"/oauth2/introspect", strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(e.resourceServer.id), url.QueryEscape(e.resourceServer.secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Active bool `json:"active"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("introspect: %d %s", resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("introspect: %s", raw)
	}
	return out.Active
}

// TestStepUp: a session at AAL2 asked for AAL3 steps up with the person's
// AAL3 key, which begin lists in allowCredentials.
func TestStepUp(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			uid := e.newPerson("Mary", "Seacole")
			tablet := e.browser(e.device(false)) // self-attested: AAL2
			tablet.mustEnrol(e.invite(uid), 2)
			key := e.device(true)
			e.browser(key).mustEnrol(e.invite(uid), 3)

			c := e.client(e.newRP("private_key_jwt", nil))
			cb, st, v, n := tablet.signIn(c, oauth2.SetAuthURLParam("acr_values", "AAL2_ANY"))
			_, _, claims := c.exchange(cb, st, v, n)
			mustEqual(t, "acr at AAL2", claims["acr"], "AAL2_ANY")
			mustEqual(t, "amr at AAL2", claims["amr"], []any{"swk", "mfa"})

			// Ask for AAL3: the AAL2 session is not enough.
			loc := tablet.follow(c.conf.AuthCodeURL(randID(), oauth2.SetAuthURLParam("acr_values", "AAL3_ANY"), oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			if loc.Path != "/login" {
				t.Fatalf("step-up: want /login, got %s", loc)
			}
			flow := loc.Query().Get("flow")
			status, opts := tablet.postJSON("/webauthn/login/begin", map[string]string{"flow": flow})
			if status != 200 {
				t.Fatalf("begin: %d %s", status, opts)
			}
			var o struct {
				PublicKey struct {
					AllowCredentials []struct{ ID string } `json:"allowCredentials"`
				} `json:"publicKey"`
			}
			_ = json.Unmarshal(opts, &o)
			if len(o.PublicKey.AllowCredentials) != 1 || o.PublicKey.AllowCredentials[0].ID != key.CredentialID() {
				t.Fatalf("step-up allowCredentials = %+v, want only the AAL3 key %s", o.PublicKey.AllowCredentials, key.CredentialID())
			}
			// The AAL2 tablet cannot satisfy it.
			as, _ := tablet.dev.Assert(opts)
			status, raw := tablet.postJSON("/webauthn/login/finish?flow="+flow, as)
			if got := decodeErr(status, raw); status < 400 || got.Code == "" {
				t.Fatalf("AAL2 credential on an AAL3 flow: %d %s", status, raw)
			}
			// The person's key, in the same browser, completes it.
			tablet.dev = key
			cb, st, v, n = tablet.signIn(c, oauth2.SetAuthURLParam("acr_values", "AAL3_ANY"))
			_, _, claims = c.exchange(cb, st, v, n)
			mustEqual(t, "acr after step-up", claims["acr"], "AAL3_ANY")
			mustEqual(t, "amr after step-up", claims["amr"], []any{"hwk", "mfa"})
		})
	}
}

// TestCeremonyRefusals: bad invites and bad assertions each get a clear
// JSON error.
func TestCeremonyRefusals(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			uid := e.newPerson("Edith", "Cavell")

			// Reused invite.
			code := e.invite(uid)
			b := e.browser(e.device(true))
			b.mustEnrol(code, 3)
			other := e.browser(e.device(true))
			st, raw := other.enrol(code)
			mustEqual(t, "reused invite", decodeErr(st, raw).Code, "invalid_invite")

			// Unknown invite.
			st, raw = other.enrol("not-a-real-invite")
			mustEqual(t, "unknown invite", decodeErr(st, raw).Code, "invalid_invite")

			// Expired invite.
			late := e.invite(uid)
			e.clock.Advance(16 * time.Minute)
			st, raw = other.enrol(late)
			mustEqual(t, "expired invite", decodeErr(st, raw).Code, "invalid_invite")
			e.clock.Advance(-16 * time.Minute)

			c := e.client(e.newRP("private_key_jwt", nil))
			start := func(br *browser) *url.URL {
				return br.follow(c.conf.AuthCodeURL(randID(), oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			}

			// Wrong origin.
			evil := e.browser(b.dev)
			evil.dev.RP.Origin = "http://evil.example"
			loc := start(evil)
			st, raw, _ = evil.login(loc)
			if got := decodeErr(st, raw); st < 400 || got.Code != "invalid_credential" {
				t.Fatalf("wrong origin: %d %s", st, raw)
			}
			evil.dev.RP.Origin = e.issuer

			// Tampered signature.
			br := e.browser(b.dev)
			loc = start(br)
			flow := loc.Query().Get("flow")
			_, opts := br.postJSON("/webauthn/login/begin", map[string]string{"flow": flow})
			as, _ := br.dev.Assert(opts)
			st, raw = br.postJSON("/webauthn/login/finish?flow="+flow, tamper(t, as))
			if got := decodeErr(st, raw); st < 400 || got.Code != "invalid_credential" {
				t.Fatalf("tampered signature: %d %s", st, raw)
			}

			// Replayed challenge: a valid assertion, sent twice.
			loc = start(br)
			flow = loc.Query().Get("flow")
			_, opts = br.postJSON("/webauthn/login/begin", map[string]string{"flow": flow})
			as, _ = br.dev.Assert(opts)
			if st, raw = br.postJSON("/webauthn/login/finish?flow="+flow, as); st != 200 {
				t.Fatalf("first finish: %d %s", st, raw)
			}
			st, raw = br.postJSON("/webauthn/login/finish?flow="+flow, as)
			if got := decodeErr(st, raw); st < 400 || got.Code == "" || got.Message == "" {
				t.Fatalf("replayed assertion accepted or unclear: %d %s", st, raw)
			}

			// Concurrent finishes of one ceremony: one signs in, the others
			// are refused (the challenge is spent with the sign-in's writes,
			// once; or the signature counter shows the replay).
			br = e.browser(b.dev) // without the session the last finish started
			loc = start(br)
			flow = loc.Query().Get("flow")
			_, opts = br.postJSON("/webauthn/login/begin", map[string]string{"flow": flow})
			as, _ = br.dev.Assert(opts)
			const n = 4
			statuses := make([]int, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					statuses[i], _ = br.postJSON("/webauthn/login/finish?flow="+flow, as)
				}()
			}
			wg.Wait()
			ok := 0
			for _, st := range statuses {
				switch st {
				case 200:
					ok++
				case 400:
				default:
					t.Fatalf("concurrent finish: status %d", st)
				}
			}
			if ok != 1 {
				t.Fatalf("%d of %d concurrent finishes of one ceremony signed in, want 1", ok, n)
			}

			// A flow cannot be finished from another browser.
			thief := e.browser(b.dev)
			loc = start(br)
			st, raw = thief.postJSON("/webauthn/login/begin", map[string]string{"flow": loc.Query().Get("flow")})
			mustEqual(t, "flow from another browser", decodeErr(st, raw).Code, "invalid_flow")
		})
	}
}

// tamper flips a bit in the assertion's signature.
func tamper(t *testing.T, as []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(as, &m); err != nil {
		t.Fatal(err)
	}
	resp := m["response"].(map[string]any)
	sig, _ := base64.RawURLEncoding.DecodeString(resp["signature"].(string))
	sig[len(sig)/2] ^= 0x01
	resp["signature"] = base64.RawURLEncoding.EncodeToString(sig)
	out, _ := json.Marshal(m)
	return out
}

// TestCodeExchangedOnce: several concurrent exchanges of one authorization
// code (each with its own client assertion) get one token pair between
// them; every other gets invalid_grant, never a second pair or a server
// error, whichever way the requests interleave. On PostgreSQL the reuse
// also revokes the pair, whether it raced the exchange or came after it
// (the memory store, for development, deletes the PKCE row before the code
// is spent, so a reuse in between is refused for that without revoking).
func TestCodeExchangedOnce(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			_, b, c := e.adaWithRP()
			for round := range 3 {
				cb, _, verifier, _ := b.signIn(c, oauth2.SetAuthURLParam("prompt", "login"))
				code := cb.Query().Get("code")
				const n = 6
				errs := make([]error, n)
				toks := make([]*oauth2.Token, n)
				var wg sync.WaitGroup
				for i := range n {
					opts := append(c.authOpts(), oauth2.VerifierOption(verifier))
					wg.Add(1)
					go func() {
						defer wg.Done()
						toks[i], errs[i] = c.conf.Exchange(context.Background(), code, opts...)
					}()
				}
				wg.Wait()
				ok := 0
				for i, err := range errs {
					var re *oauth2.RetrieveError
					switch {
					case err == nil:
						ok++
						if backend == "postgres" && introspect(t, e, toks[i].AccessToken) {
							t.Errorf("round %d: the pair of a reused code is still active", round)
						}
					case errors.As(err, &re) && re.Response.StatusCode == 400 && re.ErrorCode == "invalid_grant":
					default:
						t.Fatalf("round %d: exchange: %v, want success or invalid_grant", round, err)
					}
				}
				if ok != 1 {
					t.Fatalf("round %d: %d of %d exchanges of one code succeeded, want 1", round, ok, n)
				}
			}
		})
	}
}

// TestCodeExchangeRefusesReplayedAssertion: a code exchange whose client
// assertion was already used (its jti recorded) is refused (400 jti_known,
// fosite's error for a replayed assertion), and the code stays unspent: the same code then buys one
// token pair with a fresh assertion. On PostgreSQL the jti is recorded in
// the same round trip as the read of the code (store/postgres/readahead.go).
func TestCodeExchangeRefusesReplayedAssertion(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			_, b, c := e.adaWithRP()
			first, _, verifier, _ := b.signIn(c, oauth2.SetAuthURLParam("prompt", "login"))
			used := c.authOpts()
			if _, err := c.conf.Exchange(context.Background(), first.Query().Get("code"),
				append(used, oauth2.VerifierOption(verifier))...); err != nil {
				t.Fatalf("first exchange: %v", err)
			}
			cb, _, verifier, _ := b.signIn(c, oauth2.SetAuthURLParam("prompt", "login"))
			code := cb.Query().Get("code")
			_, err := c.conf.Exchange(context.Background(), code, append(used, oauth2.VerifierOption(verifier))...)
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.Response.StatusCode != http.StatusBadRequest || re.ErrorCode != "jti_known" {
				t.Fatalf("exchange with a replayed assertion: %v, want 400 jti_known", err)
			}
			tok, err := c.conf.Exchange(context.Background(), code, append(c.authOpts(), oauth2.VerifierOption(verifier))...)
			if err != nil || tok.AccessToken == "" {
				t.Fatalf("the code after a refused exchange: %v, want a token pair", err)
			}
		})
	}
}
