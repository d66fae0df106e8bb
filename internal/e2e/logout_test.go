package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v3"
)

// logoutRP is a relying party's back-channel logout endpoint. It validates
// every logout_token as OIDC Back-Channel Logout 1.0 and CIS2.md say (JWKS
// signature, iss, aud, exp via go-oidc; typ logout+jwt, events, sid, sub,
// jti, iat, no nonce) and answers 400 to a bad one, or 503 while down.
type logoutRP struct {
	t      *testing.T
	e      *env
	srv    *httptest.Server
	mu     sync.Mutex
	down   bool
	hits   int
	got    []map[string]any
	bad    []string
	notify chan struct{}
	rp     *rp
}

func (e *env) newLogoutRP(t *testing.T) *logoutRP {
	l := &logoutRP{t: t, e: e, notify: make(chan struct{}, 16)}
	l.srv = httptest.NewServer(http.HandlerFunc(l.serve))
	t.Cleanup(l.srv.Close)
	return l
}

func (l *logoutRP) setDown(down bool) {
	l.mu.Lock()
	l.down = down
	l.mu.Unlock()
}

func (l *logoutRP) serve(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	l.hits++
	down := l.down
	l.mu.Unlock()
	if down {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	claims, problem := l.validate(r)
	l.mu.Lock()
	if problem != "" {
		l.bad = append(l.bad, problem)
	} else {
		l.got = append(l.got, claims)
	}
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
	if problem != "" {
		http.Error(w, problem, http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (l *logoutRP) validate(r *http.Request) (map[string]any, string) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return nil, "content type " + ct
	}
	raw := r.PostFormValue("logout_token")
	if raw == "" {
		return nil, "no logout_token"
	}
	jws, err := jose.ParseSigned(raw)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, "not a JWS"
	}
	if typ, _ := jws.Signatures[0].Header.ExtraHeaders["typ"].(string); typ != "logout+jwt" {
		return nil, "typ " + typ
	}
	ctx := context.Background()
	ks := oidc.NewRemoteKeySet(ctx, l.e.issuer+"/jwks.json")
	v := oidc.NewVerifier(l.e.issuer, ks, &oidc.Config{ClientID: l.rp.id, Now: l.e.clock.Now,
		SupportedSigningAlgs: []string{"RS256", "PS256", "ES256"}})
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, "verify: " + err.Error()
	}
	var c map[string]any
	if err := tok.Claims(&c); err != nil {
		return nil, "claims"
	}
	ev, _ := c["events"].(map[string]any)
	if _, ok := ev["http://schemas.openid.net/event/backchannel-logout"]; !ok {
		return nil, "no back-channel logout event"
	}
	if _, ok := c["nonce"]; ok {
		return nil, "nonce present"
	}
	for _, k := range []string{"sid", "sub", "jti", "iat", "exp"} {
		if _, ok := c[k]; !ok {
			return nil, "missing " + k
		}
	}
	return c, ""
}

// received returns the validated logout tokens and the rejected ones.
func (l *logoutRP) received() ([]map[string]any, []string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]map[string]any(nil), l.got...), append([]string(nil), l.bad...), l.hits
}

// waitFor runs delivery passes until the RP holds n valid tokens.
func (l *logoutRP) waitFor(n int) []map[string]any {
	l.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := l.e.srv.IDP.DeliverLogouts(context.Background()); err != nil {
			l.t.Fatalf("deliver: %v", err)
		}
		got, bad, _ := l.received()
		if len(bad) > 0 {
			l.t.Fatalf("RP rejected logout tokens: %v", bad)
		}
		if len(got) >= n {
			return got
		}
		select {
		case <-l.notify:
		case <-time.After(50 * time.Millisecond):
		}
	}
	got, bad, hits := l.received()
	l.t.Fatalf("RP got %d logout tokens (%d requests, rejected %v), want %d", len(got), hits, bad, n)
	return nil
}

// logoutRPClient registers an RP with a back-channel logout endpoint and a
// post-logout redirect.
func (e *env) logoutRPClient(t *testing.T, extra map[string]any) (*oidcClient, *logoutRP) {
	l := e.newLogoutRP(t)
	meta := map[string]any{"backchannel_logout_uri": l.srv.URL + "/backchannel-logout", "backchannel_logout_session_required": true}
	for k, v := range extra {
		meta[k] = v
	}
	r := e.newRP("private_key_jwt", meta)
	// post_logout_redirect_uris must be on the RP's own host.
	l.rp = r
	return e.client(r), l
}

type signedIn struct {
	access, refresh, idToken, sid string
}

func signInTo(t *testing.T, b *browser, c *oidcClient) signedIn {
	t.Helper()
	cb, state, verifier, nonce := b.signIn(c)
	tok, _, claims := c.exchange(cb, state, verifier, nonce)
	raw, _ := tok.Extra("id_token").(string)
	sid, _ := claims["sid"].(string)
	if sid == "" || raw == "" {
		t.Fatalf("no sid or id_token: %v", claims)
	}
	return signedIn{access: tok.AccessToken, refresh: tok.RefreshToken, idToken: raw, sid: sid}
}

func mustInactive(t *testing.T, e *env, what string, toks ...string) {
	t.Helper()
	for i, tok := range toks {
		if tok == "" {
			t.Fatalf("%s: token %d is empty", what, i)
		}
		if introspect(t, e, tok) {
			t.Fatalf("%s: token %d still active at introspection", what, i)
		}
	}
}

// clinician enrols a person with an attested key and returns their browser.
func (e *env) clinician(given string) (string, *browser) {
	uid := e.newPerson(given, "Logout")
	b := e.newBrowserFor(uid)
	return uid, b
}

// TestLogoutRPInitiatedBackchannel: sign in to two RPs, log out from one
// with id_token_hint; both get a valid logout_token for the session and
// every token of the session is inactive.
func TestLogoutRPInitiatedBackchannel(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			_, b := e.clinician("Ada")
			after := "https://rp1.example.nhs.uk/signed-out"
			c1, l1 := e.logoutRPClient(t, map[string]any{"post_logout_redirect_uris": []string{after}})
			c2, l2 := e.logoutRPClient(t, nil)
			s1 := signInTo(t, b, c1)
			s2 := signInTo(t, b, c2)
			mustEqual(t, "one SSO session", s2.sid, s1.sid)
			if !introspect(t, e, s1.access) || !introspect(t, e, s2.access) {
				t.Fatal("tokens inactive before logout")
			}

			// An unregistered post_logout_redirect_uri is refused.
			resp := b.get("/oauth2/logout?" + url.Values{"id_token_hint": {s1.idToken}, "post_logout_redirect_uri": {"https://evil.example/"}}.Encode())
			mustEqual(t, "unregistered redirect status", resp.StatusCode, http.StatusBadRequest)

			resp = b.get("/oauth2/logout?" + url.Values{"id_token_hint": {s1.idToken}, "post_logout_redirect_uri": {after}, "state": {"st-1"}}.Encode())
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("logout: status %d", resp.StatusCode)
			}
			mustEqual(t, "post-logout redirect", resp.Header.Get("Location"), after+"?state=st-1")

			for _, l := range []*logoutRP{l1, l2} {
				got := l.waitFor(1)
				mustEqual(t, "logout sid", got[0]["sid"], s1.sid)
				mustEqual(t, "logout aud", got[0]["aud"], l.rp.id)
			}
			mustInactive(t, e, "after RP logout", s1.access, s1.refresh, s2.access, s2.refresh)

			// The logout and every delivery attempt are audited (an attempt
			// is recorded just after the RP answers: poll briefly).
			var kinds map[string]int
			for deadline := time.Now().Add(5 * time.Second); ; {
				var p auditPage
				e.admin("GET", "/admin/v1/audit?type=logout&limit=50", nil, 200, &p)
				kinds = map[string]int{}
				for _, ev := range p.Items {
					k, _ := ev.Detail["kind"].(string)
					kinds[k]++
				}
				if kinds["rp"] == 1 && kinds["backchannel"] >= 2 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("audited logout kinds %v, want one rp and a backchannel attempt per RP", kinds)
				}
				time.Sleep(50 * time.Millisecond)
			}

			// The browser is signed out: the next authorize asks for a sign-in.
			loc := b.follow(c2.conf.AuthCodeURL("after-logout-1"))
			if loc.Path != "/login" {
				t.Fatalf("after logout authorize went to %s, want /login", loc)
			}
		})
	}
}

// TestLogoutConfirmationWithoutHint: a logout request that cannot be tied
// to the browser's session asks for confirmation (CSRF-protected POST).
func TestLogoutConfirmationWithoutHint(t *testing.T) {
	e := newEnv(t, "memory")
	_, b := e.clinician("Mary")
	c1, l1 := e.logoutRPClient(t, nil)
	s1 := signInTo(t, b, c1)

	resp, body := b.fetch("/oauth2/logout?client_id=" + url.QueryEscape(c1.rp.id))
	if resp.StatusCode != 200 || !strings.Contains(body, "Do you want to sign out?") {
		t.Fatalf("no confirmation page: %d\n%s", resp.StatusCode, body)
	}
	if !introspect(t, e, s1.access) {
		t.Fatal("session ended without confirmation")
	}
	// Without the CSRF field the POST is refused.
	st, _ := b.postForm("/oauth2/logout", url.Values{"confirm": {"1"}, "client_id": {c1.rp.id}})
	mustEqual(t, "POST without csrf", st, http.StatusForbidden)
	if !introspect(t, e, s1.access) {
		t.Fatal("session ended by a POST without csrf")
	}
	st, _ = b.postForm("/oauth2/logout", url.Values{"confirm": {"1"}, "client_id": {c1.rp.id}, "csrf_token": {scrapeCSRF(t, body)}})
	mustEqual(t, "confirmed logout", st, http.StatusOK)
	l1.waitFor(1)
	mustInactive(t, e, "after confirmed logout", s1.access, s1.refresh)
}

// TestLogoutBackchannelRetry: an RP whose endpoint is down at logout time
// gets the logout_token when it comes back, within the retry window.
func TestLogoutBackchannelRetry(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			_, b := e.clinician("Alan")
			c1, l1 := e.logoutRPClient(t, nil)
			s1 := signInTo(t, b, c1)
			l1.setDown(true)

			st, _ := b.postForm("/logout", url.Values{})
			mustEqual(t, "POST /logout", st, http.StatusOK)
			// Wait for at least one failed attempt.
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, err := e.srv.IDP.DeliverLogouts(context.Background()); err != nil {
					t.Fatal(err)
				}
				if _, _, hits := l1.received(); hits > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no delivery attempt while the RP was down")
				}
				time.Sleep(20 * time.Millisecond)
			}
			mustInactive(t, e, "after logout", s1.access, s1.refresh)
			l1.setDown(false)
			// Nothing is retried before the backoff has passed.
			if _, err := e.srv.IDP.DeliverLogouts(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got, _, _ := l1.received(); len(got) != 0 {
				t.Fatal("retried before the backoff")
			}
			// Five minutes later (the first token has expired by then, so a
			// fresh one with the same jti is sent).
			e.clock.Advance(5 * time.Minute)
			for i := 0; i < 20; i++ {
				if got, _, _ := l1.received(); len(got) > 0 {
					break
				}
				if _, err := e.srv.IDP.DeliverLogouts(context.Background()); err != nil {
					t.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond)
				// A failed attempt still being recorded as the clock moved
				// is due a backoff later.
				e.clock.Advance(30 * time.Second)
			}
			got := l1.waitFor(1)
			mustEqual(t, "sid", got[0]["sid"], s1.sid)
		})
	}
}

// TestLogoutAccountClosedByRA: closing an account ends the person's
// sessions everywhere.
func TestLogoutAccountClosedByRA(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			uid, b := e.clinician("Rosalind")
			c1, l1 := e.logoutRPClient(t, nil)
			c2, l2 := e.logoutRPClient(t, nil)
			s1 := signInTo(t, b, c1)
			s2 := signInTo(t, b, c2)
			// A second device: another session of the same person.
			b2 := e.browser(b.dev)
			s3 := signInTo(t, b2, c1)
			if s3.sid == s1.sid {
				t.Fatal("second browser shares the session")
			}

			e.admin("POST", "/admin/v1/people/"+uid+"/close", nil, 200, nil)
			got := l1.waitFor(2)
			sids := map[any]bool{got[0]["sid"]: true, got[1]["sid"]: true}
			if !sids[s1.sid] || !sids[s3.sid] {
				t.Fatalf("rp1 logout sids %v, want %s and %s", sids, s1.sid, s3.sid)
			}
			l2.waitFor(1)
			mustInactive(t, e, "after account closure", s1.access, s1.refresh, s2.access, s3.access)
		})
	}
}

// TestLogoutAdminEndsSessions: DELETE /admin/v1/people/{uid}/sessions.
func TestLogoutAdminEndsSessions(t *testing.T) {
	e := newEnv(t, "postgres")
	uid, b := e.clinician("Barbara")
	c1, l1 := e.logoutRPClient(t, nil)
	s1 := signInTo(t, b, c1)
	var out struct {
		Ended int `json:"sessions_ended"`
	}
	e.admin("DELETE", "/admin/v1/people/"+uid+"/sessions", nil, 200, &out)
	mustEqual(t, "sessions ended", out.Ended, 1)
	l1.waitFor(1)
	mustInactive(t, e, "after admin end", s1.access, s1.refresh)
	e.admin("DELETE", "/admin/v1/people/999999999999/sessions", nil, 404, nil)
}

// TestSessionAbsoluteExpiry: past the absolute lifetime the sweeper ends
// the session and the RPs are told.
func TestSessionAbsoluteExpiry(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			_, b := e.clinician("Dorothy")
			c1, l1 := e.logoutRPClient(t, nil)
			s1 := signInTo(t, b, c1)
			n, err := e.srv.Authn.SweepExpiredSessions(context.Background())
			if err != nil || n != 0 {
				t.Fatalf("sweep before expiry: %d %v", n, err)
			}
			e.clock.Advance(12*time.Hour + time.Minute)
			n, err = e.srv.Authn.SweepExpiredSessions(context.Background())
			if err != nil || n != 1 {
				t.Fatalf("sweep after expiry: ended %d, err %v", n, err)
			}
			got := l1.waitFor(1)
			mustEqual(t, "sid", got[0]["sid"], s1.sid)
			// Refresh tokens of the session are revoked (access tokens have
			// expired anyway by now).
			mustInactive(t, e, "after expiry", s1.refresh)
		})
	}
}

// TestSessionIdleReauthenticates: an idle session is not reused (the next
// authorize signs in again, and the flow resumes to the RP) and no RP is
// told; a client's own short idle timeout (ward tablets) applies to it only.
func TestSessionIdleReauthenticates(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			_, b := e.clinician("Florence")
			c1, l1 := e.logoutRPClient(t, nil)
			tablet, l2 := e.logoutRPClient(t, map[string]any{"nhsid_idle_timeout": 1})
			s1 := signInTo(t, b, c1)
			signInTo(t, b, tablet)

			// Past the tablet client's one-second idle timeout (real time:
			// fosite checks auth_time against the wall clock, so a fresh
			// sign-in cannot follow an advanced test clock).
			time.Sleep(1100 * time.Millisecond)
			loc := b.follow(tablet.conf.AuthCodeURL("tablet-state-1"))
			if loc.Path != "/login" {
				t.Fatalf("tablet client after its idle timeout: got %s, want /login", loc)
			}
			// The same key brings the user straight back to the app.
			st, raw, redirect := b.login(loc)
			if st != 200 {
				t.Fatalf("re-authentication: %d %s", st, raw)
			}
			back := b.follow(redirect)
			if back.Query().Get("code") == "" || back.Query().Get("state") != "tablet-state-1" {
				t.Fatalf("after re-authentication: %s", back)
			}
			// The ordinary client still gets SSO.
			loc = b.follow(c1.conf.AuthCodeURL("sso-state-1"))
			if loc.Query().Get("code") == "" {
				t.Fatalf("SSO to the ordinary client: got %s, want a code", loc)
			}

			// Past the session's own idle timeout (AAL3: 15 minutes).
			e.clock.Advance(16 * time.Minute)
			loc = b.follow(c1.conf.AuthCodeURL("idle-state-1"))
			if loc.Path != "/login" {
				t.Fatalf("idle session reused: %s", loc)
			}
			if _, err := e.srv.IDP.DeliverLogouts(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n, err := e.srv.Authn.SweepExpiredSessions(context.Background()); err != nil || n != 0 {
				t.Fatalf("sweep ended %d idle sessions (err %v)", n, err)
			}
			time.Sleep(200 * time.Millisecond)
			for _, l := range []*logoutRP{l1, l2} {
				if got, bad, hits := l.received(); hits != 0 {
					t.Fatalf("idle timeout sent back-channel logout: %v %v", got, bad)
				}
			}
			if !introspect(t, e, s1.refresh) {
				t.Fatal("idle timeout revoked the session's refresh token")
			}

			// Re-authentication kept the SSO session's sid: signing out now
			// still reaches the apps and tokens from before the timeout.
			if st, _ := b.postForm("/logout", url.Values{}); st != http.StatusOK {
				t.Fatalf("POST /logout: %d", st)
			}
			mustEqual(t, "sid after re-authentication", l1.waitFor(1)[0]["sid"], s1.sid)
			l2.waitFor(1)
			mustInactive(t, e, "after logout", s1.refresh)
		})
	}
}

// TestAccountSessions: the account page lists the person's sessions with
// the apps used, and ending one tells its RPs.
func TestAccountSessions(t *testing.T) {
	e := newEnv(t, "memory")
	_, b := e.clinician("Katherine")
	c1, l1 := e.logoutRPClient(t, map[string]any{"client_name": "Ward Rota"})
	s1 := signInTo(t, b, c1)
	b2 := e.browser(b.dev)
	s2 := signInTo(t, b2, c1)

	page := b.page("/account")
	if !strings.Contains(page, "Where you are signed in") || strings.Count(page, "/account/sessions/") != 2 || !strings.Contains(page, c1.rp.id) {
		t.Fatalf("account page does not list both sessions with the app:\n%s", page)
	}
	csrf := scrapeCSRF(t, page)
	st, _ := b.postForm("/account/sessions/"+url.PathEscape(s2.sid)+"/end", url.Values{"csrf_token": {"wrong"}})
	mustEqual(t, "end without csrf", st, http.StatusForbidden)
	st, loc := b.postForm("/account/sessions/"+url.PathEscape(s2.sid)+"/end", url.Values{"csrf_token": {csrf}})
	if st != http.StatusSeeOther || loc != "/account" {
		t.Fatalf("end other session: %d %s", st, loc)
	}
	got := l1.waitFor(1)
	mustEqual(t, "ended sid", got[0]["sid"], s2.sid)
	mustInactive(t, e, "other session", s2.access, s2.refresh)
	if !introspect(t, e, s1.access) {
		t.Fatal("ending another session ended this one")
	}
}
