package idp_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
	"github.com/nhsid/nhsid/store/memory"
)

// fakeAuthn is a stand-in for authn.Service: one fixed session for every
// browser, flows in a map.
type fakeAuthn struct {
	mu      sync.Mutex
	session *authn.Session
	flows   map[string]*authn.Flow
	n       int
	// touched counts TouchSession calls (SSO reuse).
	touched int
}

func newFakeAuthn() *fakeAuthn { return &fakeAuthn{flows: map[string]*authn.Flow{}} }

func (f *fakeAuthn) setSession(s *authn.Session) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.session = s
}

func (f *fakeAuthn) CurrentSession(*http.Request) (*authn.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.session == nil {
		return nil, nil
	}
	c := *f.session
	return &c, nil
}

func (f *fakeAuthn) Usable(s *authn.Session, now time.Time) bool {
	return s.EndedAt.IsZero() && (s.IdleTimeout == 0 || now.Before(s.LastSeenAt.Add(s.IdleTimeout)))
}

func (f *fakeAuthn) StartFlow(_ http.ResponseWriter, _ *http.Request, fl authn.Flow) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	fl.ID = fmt.Sprintf("flow%d", f.n)
	fl.ExpiresAt = time.Now().Add(10 * time.Minute)
	f.flows[fl.ID] = &fl
	return "/login?flow=" + fl.ID, nil
}

func (f *fakeAuthn) LoadFlow(_ *http.Request, id string) (*authn.Flow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl, ok := f.flows[id]
	if !ok {
		return nil, apierror.New(http.StatusBadRequest, "invalid_flow", "unknown flow", nil)
	}
	c := *fl
	return &c, nil
}

func (f *fakeAuthn) BoundTo(*http.Request, []byte) bool { return true }

func (f *fakeAuthn) FinishFlow(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.flows, id)
	return nil
}

func (f *fakeAuthn) TouchSession(_ context.Context, s *authn.Session) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.touched++
	return nil
}

func (f *fakeAuthn) flow(id string) *authn.Flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flows[id]
}

// signIn plays authn's part after a ceremony: a session, and the flow
// marked authenticated.
func (f *fakeAuthn) signIn(flowID string, s *authn.Session) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.session = s
	if fl := f.flows[flowID]; fl != nil {
		fl.SessionSID = s.SID
		fl.AuthenticatedAt = s.AuthTime
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	t      *testing.T
	p      *idp.Provider
	store  *memory.Store
	authn  *fakeAuthn
	srv    *httptest.Server
	http   *http.Client
	clock  *clock
	issuer string
}

type envOpt func(*idp.Config, *idp.Deps)

func secret(b byte) []byte {
	s := make([]byte, 32)
	for i := range s {
		s[i] = b
	}
	return s
}

func newEnv(t *testing.T, opts ...envOpt) *env {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	st := memory.New()
	fa := newFakeAuthn()
	clk := &clock{t: time.Now()}
	cfg := idp.Config{
		Issuer:       srv.URL,
		GlobalSecret: secret('g'),
		SecretPepper: secret('p'),
		KEK:          secret('k'),
		SigningAlgs:  []string{idp.AlgRS256, idp.AlgES256},
	}
	deps := idp.Deps{Store: st, People: st, Authn: fa, Now: clk.Now}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	p, err := idp.New(cfg, deps)
	if err != nil {
		t.Fatalf("idp.New: %v", err)
	}
	p.Mount(mux)
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &env{t: t, p: p, store: st, authn: fa, srv: srv, http: hc, clock: clk, issuer: srv.URL}
}

const redirectURI = "http://localhost:9999/cb"

func (e *env) registerClient(c *idp.Client) (string, string) {
	e.t.Helper()
	sec, err := e.p.RegisterClient(context.Background(), c)
	if err != nil {
		e.t.Fatalf("RegisterClient: %v", err)
	}
	return c.ID, sec
}

func (e *env) webClient(mod func(*idp.Client)) (*idp.Client, string) {
	c := &idp.Client{
		RedirectURIs:            []string{redirectURI},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		Scope:                   "openid profile email nhsperson professionalmemberships selectedrole offline_access",
		TokenEndpointAuthMethod: idp.AuthClientSecretBasic,
	}
	if mod != nil {
		mod(c)
	}
	_, sec := e.registerClient(c)
	return c, sec
}

func (e *env) person() policy.Person {
	e.t.Helper()
	p := policy.Person{UID: "555057896106", Title: "Dr", GivenName: "Ada", MiddleNames: "Mary Jane", FamilyName: "Lovelace",
		Email: "ada@example.nhs.uk", IDAssuranceLevel: 3, Registrations: map[string]string{"gmc": "1234567"}, Status: policy.StatusActive}
	if err := e.store.CreatePerson(context.Background(), p); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func session(uid string, aal int, authTime time.Time) *authn.Session {
	amr := []string{"hwk", "mfa"}
	if aal == 2 {
		amr = []string{"swk", "mfa"}
	}
	return &authn.Session{SID: "sid-" + uid, PersonUID: uid, AAL: aal, AMR: amr, AuthTime: authTime,
		LastSeenAt: authTime, ExpiresAt: authTime.Add(12 * time.Hour)}
}

func (e *env) get(path string) *http.Response {
	e.t.Helper()
	u := path
	if strings.HasPrefix(path, "/") {
		u = e.srv.URL + path
	}
	resp, err := e.http.Get(u)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func pkce() (verifier, challenge string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

func authorizeQuery(clientID string, extra url.Values) string {
	q := url.Values{
		"response_type": {"code"},
		"client_id":     {clientID},
		"redirect_uri":  {redirectURI},
		"scope":         {"openid profile email nhsperson professionalmemberships offline_access"},
		"state":         {"state-0123456789"},
		"nonce":         {"nonce-0123456789"},
	}
	for k, v := range extra {
		q[k] = v
	}
	return idp.PathAuthorize + "?" + q.Encode()
}

// expectRedirect checks a 302/303 and returns the parsed Location.
func expectRedirect(t *testing.T, resp *http.Response) *url.URL {
	t.Helper()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d, want redirect; body %s", resp.StatusCode, body)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (e *env) token(clientID, clientSecret string, form url.Values) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+idp.PathToken, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if clientSecret != "" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
	}
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		e.t.Fatalf("token response: %v", err)
	}
	return resp.StatusCode, out
}

func (e *env) jwks() *jose.JSONWebKeySet {
	e.t.Helper()
	resp := e.get(idp.PathJWKS)
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		e.t.Fatal(err)
	}
	return &set
}

// verifyJWT checks a JWT against the published JWKS and returns its
// header and claims.
func (e *env) verifyJWT(raw string) (jose.Header, map[string]any) {
	e.t.Helper()
	tok, err := josejwt.ParseSigned(raw)
	if err != nil {
		e.t.Fatalf("parse jwt: %v", err)
	}
	set := e.jwks()
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		e.t.Fatalf("kid %q not in JWKS", tok.Headers[0].KeyID)
	}
	var claims map[string]any
	if err := tok.Claims(keys[0].Key, &claims); err != nil {
		e.t.Fatalf("verify jwt: %v", err)
	}
	return tok.Headers[0], claims
}

// login runs authorize → (flow → sign-in → resume) and returns the code.
func (e *env) login(clientID string, extra url.Values, s *authn.Session) *url.URL {
	e.t.Helper()
	u := expectRedirect(e.t, e.get(authorizeQuery(clientID, extra)))
	if u.Path == "/login" {
		id := u.Query().Get("flow")
		e.authn.signIn(id, s)
		fl := e.authn.flow(id)
		if fl == nil {
			e.t.Fatal("flow not stored")
		}
		u = expectRedirect(e.t, e.get(fl.ResumeURL+"?flow="+id))
	}
	return u
}

func TestNewComposesFosite(t *testing.T) {
	e := newEnv(t)
	if e.p.OAuth2Provider() == nil {
		t.Fatal("no fosite provider")
	}
	if err := e.p.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	st := memory.New()
	tests := []struct {
		name string
		cfg  idp.Config
	}{
		{"no issuer", idp.Config{GlobalSecret: secret('g'), SecretPepper: secret('p'), KEK: secret('k')}},
		{"short secret", idp.Config{Issuer: "https://idp.example", GlobalSecret: []byte("short"), SecretPepper: secret('p'), KEK: secret('k')}},
		{"bad kek", idp.Config{Issuer: "https://idp.example", GlobalSecret: secret('g'), SecretPepper: secret('p'), KEK: []byte("x")}},
		{"http issuer in prod", idp.Config{Issuer: "http://idp.example", GlobalSecret: secret('g'), SecretPepper: secret('p'), KEK: secret('k')}},
		{"bad alg", idp.Config{Issuer: "https://idp.example", GlobalSecret: secret('g'), SecretPepper: secret('p'), KEK: secret('k'), SigningAlgs: []string{"HS256"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := idp.New(tt.cfg, idp.Deps{Store: st, People: st, Authn: newFakeAuthn()}); err == nil {
				t.Fatal("want error")
			}
		})
	}
}

func TestAuthorizeCodeFlow(t *testing.T) {
	e := newEnv(t)
	person := e.person()
	// A sandbox client signs in test accounts only (policy.CheckEnvironment).
	if _, err := e.store.UpdatePerson(context.Background(), person.UID, func(p *policy.Person) error { p.TestAccount = true; return nil }); err != nil {
		t.Fatal(err)
	}
	c, sec := e.webClient(func(c *idp.Client) { c.Environment = "sandbox" })

	// No session: off to the login page with a flow.
	u := expectRedirect(t, e.get(authorizeQuery(c.ID, url.Values{"acr_values": {"AAL3_ANY"}})))
	if u.Path != "/login" || u.Query().Get("flow") == "" {
		t.Fatalf("redirect to %s, want /login?flow=", u)
	}
	fl := e.authn.flow(u.Query().Get("flow"))
	if fl.Kind != "oidc" || fl.ClientID != c.ID || fl.MinAAL != 3 || fl.ResumeURL != idp.PathResume || fl.RequestedAt.Nanosecond() != 0 {
		t.Fatalf("flow = %+v", fl)
	}
	authTime := time.Now().Add(-time.Second)
	e.authn.signIn(fl.ID, session(person.UID, 3, authTime))
	cb := expectRedirect(t, e.get(fl.ResumeURL+"?flow="+fl.ID))
	if cb.Host != "localhost:9999" || cb.Query().Get("code") == "" {
		t.Fatalf("callback %s", cb)
	}
	if cb.Query().Get("iss") != e.issuer || cb.Query().Get("state") != "state-0123456789" {
		t.Fatalf("callback lacks iss/state: %s", cb)
	}
	if e.authn.flow(fl.ID) != nil {
		t.Fatal("flow not finished")
	}

	status, tok := e.token(c.ID, sec, url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {redirectURI}})
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, tok)
	}
	for _, k := range []string{"access_token", "id_token", "refresh_token", "expires_in", "scope", "token_type"} {
		if tok[k] == nil {
			t.Errorf("token response lacks %s", k)
		}
	}
	if exp := tok["expires_in"].(float64); exp < 3590 || exp > 3600 {
		t.Errorf("expires_in = %v", exp)
	}
	hdr, claims := e.verifyJWT(tok["id_token"].(string))
	if hdr.Algorithm != "RS256" {
		t.Errorf("alg %s", hdr.Algorithm)
	}
	want := map[string]any{
		"iss": e.issuer, "sub": person.UID, "nonce": "nonce-0123456789", "sid": "sid-" + person.UID,
		"acr": "AAL3_ANY", "nhsid_useruid": person.UID, "id_assurance_level": "3",
		"authentication_assurance_level": "3", "nhsid_environment": "sandbox", "azp": c.ID,
		"auth_time": float64(authTime.Unix()),
	}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("id_token %s = %v, want %v", k, claims[k], v)
		}
	}
	if amr, _ := json.Marshal(claims["amr"]); string(amr) != `["hwk","mfa"]` {
		t.Errorf("amr = %s", amr)
	}
	if _, ok := claims["x-nhsid-alg"]; ok {
		t.Error("private header leaked")
	}

	// userinfo
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+idp.PathUserinfo, nil)
	req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ui map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&ui)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("userinfo %d %v", resp.StatusCode, ui)
	}
	wantUI := map[string]any{"sub": person.UID, "name": "Dr Ada Mary Jane Lovelace", "given_name": "Ada", "family_name": "Lovelace",
		"uid": person.UID, "email": "ada@example.nhs.uk", "nhsid_useruid": person.UID, "title": "Dr", "initials": "AMJ",
		"middle_names": "Mary Jane", "display_name": "Ada Lovelace", "idassurancelevel": "3", "gmc_id": "1234567"}
	for k, v := range wantUI {
		if ui[k] != v {
			t.Errorf("userinfo %s = %v, want %v", k, ui[k], v)
		}
	}
	// Changes to the person show at once.
	if _, err := e.store.UpdatePerson(context.Background(), person.UID, func(p *policy.Person) error { p.Email = "new@example.nhs.uk"; return nil }); err != nil {
		t.Fatal(err)
	}
	resp2, err := e.http.Do(req.Clone(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	ui = nil
	_ = json.NewDecoder(resp2.Body).Decode(&ui)
	if ui["email"] != "new@example.nhs.uk" {
		t.Errorf("userinfo email after change = %v", ui["email"])
	}

	// introspection
	ireq, _ := http.NewRequest(http.MethodPost, e.srv.URL+idp.PathIntrospect, strings.NewReader(url.Values{"token": {tok["access_token"].(string)}}.Encode()))
	ireq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	ireq.SetBasicAuth(c.ID, sec)
	iresp, err := e.http.Do(ireq)
	if err != nil {
		t.Fatal(err)
	}
	defer iresp.Body.Close()
	var intro map[string]any
	_ = json.NewDecoder(iresp.Body).Decode(&intro)
	if intro["active"] != true || intro["sub"] != person.UID {
		t.Fatalf("introspection = %v", intro)
	}

	// refresh: a new pair, the ID token keeps the sign-in facts
	status, tok2 := e.token(c.ID, sec, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}})
	if status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, tok2)
	}
	_, claims2 := e.verifyJWT(tok2["id_token"].(string))
	if claims2["sid"] != claims["sid"] || claims2["acr"] != "AAL3_ANY" || claims2["auth_time"] != claims["auth_time"] {
		t.Errorf("refreshed id_token claims %v", claims2)
	}

	// revocation of the new refresh token
	rreq, _ := http.NewRequest(http.MethodPost, e.srv.URL+idp.PathRevoke, strings.NewReader(url.Values{"token": {tok2["refresh_token"].(string)}}.Encode()))
	rreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rreq.SetBasicAuth(c.ID, sec)
	rresp, err := e.http.Do(rreq)
	if err != nil {
		t.Fatal(err)
	}
	rresp.Body.Close()
	if rresp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d", rresp.StatusCode)
	}
	status, _ = e.token(c.ID, sec, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok2["refresh_token"].(string)}})
	if status == http.StatusOK {
		t.Fatal("revoked refresh token still works")
	}
}

func TestSSOReuseAndPromptNone(t *testing.T) {
	e := newEnv(t)
	person := e.person()
	c, _ := e.webClient(nil)

	t.Run("prompt=none without session", func(t *testing.T) {
		e.authn.setSession(nil)
		u := expectRedirect(t, e.get(authorizeQuery(c.ID, url.Values{"prompt": {"none"}})))
		if u.Query().Get("error") != "login_required" || u.Query().Get("iss") != e.issuer {
			t.Fatalf("redirect %s, want login_required with iss", u)
		}
	})
	t.Run("prompt=none with session", func(t *testing.T) {
		e.authn.setSession(session(person.UID, 3, time.Now().Add(-time.Minute)))
		e.authn.mu.Lock()
		before := e.authn.touched
		e.authn.mu.Unlock()
		u := expectRedirect(t, e.get(authorizeQuery(c.ID, url.Values{"prompt": {"none"}})))
		if u.Query().Get("code") == "" {
			t.Fatalf("redirect %s, want code", u)
		}
		e.authn.mu.Lock()
		defer e.authn.mu.Unlock()
		if e.authn.touched != before+1 {
			t.Fatalf("SSO reuse did not touch the session (idle timer): %d touches", e.authn.touched-before)
		}
	})
	t.Run("idle session needs login", func(t *testing.T) {
		s := session(person.UID, 3, time.Now().Add(-time.Hour))
		s.IdleTimeout = 15 * time.Minute
		e.authn.setSession(s)
		u := expectRedirect(t, e.get(authorizeQuery(c.ID, url.Values{"prompt": {"none"}})))
		if u.Query().Get("error") != "login_required" {
			t.Fatalf("redirect %s", u)
		}
	})
	t.Run("step-up for AAL3", func(t *testing.T) {
		e.authn.setSession(session(person.UID, 2, time.Now().Add(-time.Minute)))
		u := expectRedirect(t, e.get(authorizeQuery(c.ID, url.Values{"acr_values": {"AAL3_ANY"}})))
		if u.Path != "/login" {
			t.Fatalf("redirect %s, want login", u)
		}
		if fl := e.authn.flow(u.Query().Get("flow")); fl.MinAAL != 3 {
			t.Fatalf("MinAAL %d", fl.MinAAL)
		}
	})
	t.Run("AAL2 session reused for AAL2_OR_AAL3_ANY", func(t *testing.T) {
		e.authn.setSession(session(person.UID, 2, time.Now().Add(-time.Minute)))
		u := expectRedirect(t, e.get(authorizeQuery(c.ID, url.Values{"acr_values": {"AAL2_OR_AAL3_ANY"}})))
		if u.Query().Get("code") == "" {
			t.Fatalf("redirect %s, want code", u)
		}
	})
}

func TestMaxAgeAndPromptLogin(t *testing.T) {
	e := newEnv(t)
	person := e.person()
	c, sec := e.webClient(nil)
	old := session(person.UID, 3, time.Now().Add(-10*time.Minute))

	tests := []struct {
		name  string
		extra url.Values
	}{
		{"max_age exceeded", url.Values{"max_age": {"300"}}},
		{"max_age zero", url.Values{"max_age": {"0"}}},
		{"prompt=login", url.Values{"prompt": {"login"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.authn.setSession(old)
			u := expectRedirect(t, e.get(authorizeQuery(c.ID, tt.extra)))
			if u.Path != "/login" {
				t.Fatalf("redirect %s, want a new flow", u)
			}
			fl := e.authn.flow(u.Query().Get("flow"))
			if !fl.ForceLogin {
				t.Fatal("ForceLogin not set")
			}
			fresh := session(person.UID, 3, time.Now())
			fresh.SID = "sid-fresh"
			e.authn.signIn(fl.ID, fresh)
			cb := expectRedirect(t, e.get(fl.ResumeURL+"?flow="+fl.ID))
			if cb.Query().Get("code") == "" {
				t.Fatalf("resume redirect %s, want code (no loop)", cb)
			}
			status, tok := e.token(c.ID, sec, url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {redirectURI}})
			if status != http.StatusOK {
				t.Fatalf("token %d %v", status, tok)
			}
			_, claims := e.verifyJWT(tok["id_token"].(string))
			if claims["sid"] != "sid-fresh" {
				t.Fatalf("sid %v", claims["sid"])
			}
		})
	}
	t.Run("max_age satisfied reuses session", func(t *testing.T) {
		e.authn.setSession(old)
		u := expectRedirect(t, e.get(authorizeQuery(c.ID, url.Values{"max_age": {"3600"}})))
		if u.Query().Get("code") == "" {
			t.Fatalf("redirect %s", u)
		}
	})
}

func TestResumeRequiresFlowSession(t *testing.T) {
	e := newEnv(t)
	person := e.person()
	c, _ := e.webClient(nil)
	e.authn.setSession(nil)
	u := expectRedirect(t, e.get(authorizeQuery(c.ID, nil)))
	id := u.Query().Get("flow")
	// A session exists, but not the one the flow authenticated.
	e.authn.setSession(session(person.UID, 3, time.Now()))
	resp := e.get(idp.PathResume + "?flow=" + id)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	resp = e.get(idp.PathResume + "?flow=nope")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown flow: status %d", resp.StatusCode)
	}
}

func TestRequirePARAndPARFlow(t *testing.T) {
	e := newEnv(t)
	person := e.person()
	c, sec := e.webClient(func(c *idp.Client) { c.RequirePAR = true })

	u := expectRedirect(t, e.get(authorizeQuery(c.ID, nil)))
	if u.Query().Get("error") != "invalid_request" {
		t.Fatalf("without PAR: %s", u)
	}
	verifier, challenge := pkce()
	form := url.Values{"response_type": {"code"}, "client_id": {c.ID}, "redirect_uri": {redirectURI},
		"scope": {"openid profile"}, "state": {"state-0123456789"}, "nonce": {"nonce-0123456789"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+idp.PathPAR, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.ID, sec)
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var par map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&par)
	if resp.StatusCode != http.StatusCreated || par["request_uri"] == nil {
		t.Fatalf("PAR: %d %v", resp.StatusCode, par)
	}
	q := url.Values{"client_id": {c.ID}, "request_uri": {par["request_uri"].(string)}}
	u = expectRedirect(t, e.get(idp.PathAuthorize+"?"+q.Encode()))
	if u.Path != "/login" {
		t.Fatalf("redirect %s", u)
	}
	fl := e.authn.flow(u.Query().Get("flow"))
	e.authn.signIn(fl.ID, session(person.UID, 3, time.Now()))
	cb := expectRedirect(t, e.get(fl.ResumeURL+"?flow="+fl.ID))
	if cb.Query().Get("code") == "" || cb.Query().Get("state") != "state-0123456789" {
		t.Fatalf("callback %s", cb)
	}
	status, tok := e.token(c.ID, sec, url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")},
		"redirect_uri": {redirectURI}, "code_verifier": {verifier}})
	if status != http.StatusOK {
		t.Fatalf("token %d %v", status, tok)
	}
}

func TestPublicClientNeedsPKCE(t *testing.T) {
	e := newEnv(t)
	person := e.person()
	c, _ := e.webClient(func(c *idp.Client) {
		c.TokenEndpointAuthMethod = idp.AuthNone
		c.GrantTypes = []string{"authorization_code"}
	})
	e.authn.setSession(session(person.UID, 3, time.Now()))
	u := expectRedirect(t, e.get(authorizeQuery(c.ID, nil)))
	if u.Query().Get("error") == "" {
		t.Fatalf("public client without PKCE got %s", u)
	}
	verifier, challenge := pkce()
	u = expectRedirect(t, e.get(authorizeQuery(c.ID, url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}})))
	if u.Query().Get("code") == "" {
		t.Fatalf("redirect %s", u)
	}
	status, tok := e.token(c.ID, "", url.Values{"grant_type": {"authorization_code"}, "client_id": {c.ID}, "code": {u.Query().Get("code")},
		"redirect_uri": {redirectURI}, "code_verifier": {verifier}})
	if status != http.StatusOK {
		t.Fatalf("token %d %v", status, tok)
	}
	// plain is refused
	u = expectRedirect(t, e.get(authorizeQuery(c.ID, url.Values{"code_challenge": {verifier}, "code_challenge_method": {"plain"}})))
	if u.Query().Get("error") == "" {
		t.Fatalf("plain PKCE accepted: %s", u)
	}
}

func TestClientCredentials(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name   string
		format string
	}{
		{"opaque", "opaque"},
		{"jwt", "jwt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &idp.Client{GrantTypes: []string{"client_credentials"}, Scope: "nhsid:admin",
				Audience: []string{"nhsid-admin"}, TokenEndpointAuthMethod: idp.AuthClientSecretBasic, AccessTokenFormat: tt.format}
			id, sec := e.registerClient(c)
			if sec == "" {
				t.Fatal("no secret issued")
			}
			status, tok := e.token(id, sec, url.Values{"grant_type": {"client_credentials"}, "scope": {"nhsid:admin"}, "audience": {"nhsid-admin"}})
			if status != http.StatusOK {
				t.Fatalf("token %d %v", status, tok)
			}
			if tok["scope"] != "nhsid:admin" {
				t.Errorf("scope %v", tok["scope"])
			}
			at := tok["access_token"].(string)
			if tt.format == "jwt" {
				hdr, claims := e.verifyJWT(at)
				if hdr.ExtraHeaders["typ"] != "at+jwt" {
					t.Errorf("typ %v", hdr.ExtraHeaders["typ"])
				}
				if claims["client_id"] != id || claims["scope"] != "nhsid:admin" || claims["sub"] != id {
					t.Errorf("claims %v", claims)
				}
				if aud, _ := json.Marshal(claims["aud"]); string(aud) != `["nhsid-admin"]` {
					t.Errorf("aud %s", aud)
				}
			} else if strings.Count(at, ".") == 2 {
				t.Errorf("opaque token looks like a JWT")
			}
			status, tok = e.token(id, "wrong", url.Values{"grant_type": {"client_credentials"}})
			if status != http.StatusUnauthorized || tok["error"] != "invalid_client" {
				t.Fatalf("wrong secret: %d %v", status, tok)
			}
		})
	}
}

func TestDisabledClient(t *testing.T) {
	e := newEnv(t)
	id, sec := e.registerClient(&idp.Client{GrantTypes: []string{"client_credentials"}, TokenEndpointAuthMethod: idp.AuthClientSecretPost})
	if _, err := e.store.UpdateClient(context.Background(), id, func(c *idp.Client) error { c.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	status, tok := e.token(id, "", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {sec}})
	if status != http.StatusUnauthorized || tok["error"] != "invalid_client" {
		t.Fatalf("disabled client: %d %v", status, tok)
	}
}

func TestTokenEndpointAvailabilityGate(t *testing.T) {
	var down bool
	var mu sync.Mutex
	e := newEnv(t, func(_ *idp.Config, d *idp.Deps) {
		d.Ready = func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			if down {
				return errors.New("db down")
			}
			return nil
		}
	})
	id, sec := e.registerClient(&idp.Client{GrantTypes: []string{"client_credentials"}, TokenEndpointAuthMethod: idp.AuthClientSecretBasic})
	mu.Lock()
	down = true
	mu.Unlock()
	status, tok := e.token(id, sec, url.Values{"grant_type": {"client_credentials"}})
	if status != http.StatusServiceUnavailable || tok["error"] != "temporarily_unavailable" {
		t.Fatalf("gate: %d %v", status, tok)
	}
}

func TestRegisterClientValidation(t *testing.T) {
	e := newEnv(t)
	jwks := &jose.JSONWebKeySet{}
	tests := []struct {
		name    string
		client  idp.Client
		wantErr string // substring of the message, "" for success
		secret  bool
	}{
		{"secret basic", idp.Client{RedirectURIs: []string{"https://rp.example/cb"}, TokenEndpointAuthMethod: "client_secret_basic"}, "", true},
		{"secret post", idp.Client{RedirectURIs: []string{"https://rp.example/cb"}, TokenEndpointAuthMethod: "client_secret_post"}, "", true},
		{"private_key_jwt with jwks", idp.Client{RedirectURIs: []string{"https://rp.example/cb"}, TokenEndpointAuthMethod: "private_key_jwt", JWKS: jwks}, "", false},
		{"private_key_jwt with jwks_uri", idp.Client{RedirectURIs: []string{"https://rp.example/cb"}, TokenEndpointAuthMethod: "private_key_jwt", JWKSURI: "https://rp.example/jwks"}, "", false},
		{"private_key_jwt without keys", idp.Client{RedirectURIs: []string{"https://rp.example/cb"}, TokenEndpointAuthMethod: "private_key_jwt"}, "jwks", false},
		{"localhost http ok", idp.Client{RedirectURIs: []string{"http://localhost:3000/cb", "http://127.0.0.1/cb"}, TokenEndpointAuthMethod: "client_secret_basic"}, "", true},
		{"http not localhost", idp.Client{RedirectURIs: []string{"http://rp.example/cb"}, TokenEndpointAuthMethod: "client_secret_basic"}, "https", false},
		{"fragment", idp.Client{RedirectURIs: []string{"https://rp.example/cb#x"}, TokenEndpointAuthMethod: "client_secret_basic"}, "fragment", false},
		{"relative", idp.Client{RedirectURIs: []string{"/cb"}, TokenEndpointAuthMethod: "client_secret_basic"}, "absolute", false},
		{"unknown auth method", idp.Client{RedirectURIs: []string{"https://rp.example/cb"}, TokenEndpointAuthMethod: "tls_client_auth"}, "not supported", false},
		{"public with refresh", idp.Client{RedirectURIs: []string{"https://rp.example/cb"}, TokenEndpointAuthMethod: "none", GrantTypes: []string{"authorization_code", "refresh_token"}}, "public clients", false},
		{"public ok", idp.Client{RedirectURIs: []string{"https://rp.example/cb"}, TokenEndpointAuthMethod: "none"}, "", false},
		{"implicit grant", idp.Client{RedirectURIs: []string{"https://rp.example/cb"}, TokenEndpointAuthMethod: "client_secret_basic", GrantTypes: []string{"implicit"}}, "implicit", false},
		{"password grant", idp.Client{TokenEndpointAuthMethod: "client_secret_basic", GrantTypes: []string{"password"}}, "password", false},
		{"bad id token alg", idp.Client{RedirectURIs: []string{"https://rp.example/cb"}, TokenEndpointAuthMethod: "client_secret_basic", IDTokenSignedResponseAlg: "HS256"}, "id_token_signed_response_alg", false},
		{"bad aal", idp.Client{RedirectURIs: []string{"https://rp.example/cb"}, TokenEndpointAuthMethod: "client_secret_basic", RequiredAAL: 1}, "nhsid_required_aal", false},
		{"bad token format", idp.Client{RedirectURIs: []string{"https://rp.example/cb"}, TokenEndpointAuthMethod: "client_secret_basic", AccessTokenFormat: "paseto"}, "nhsid_access_token_format", false},
		{"bad environment", idp.Client{RedirectURIs: []string{"https://rp.example/cb"}, TokenEndpointAuthMethod: "client_secret_basic", Environment: "test"}, "nhsid_environment", false},
		{"no redirect uris", idp.Client{TokenEndpointAuthMethod: "client_secret_basic"}, "redirect_uris", false},
		{"several problems at once", idp.Client{RedirectURIs: []string{"http://rp.example/cb"}, TokenEndpointAuthMethod: "client_secret_basic", RequiredAAL: 5}, "nhsid_required_aal", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.client
			sec, err := e.p.RegisterClient(context.Background(), &c)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("RegisterClient: %v", err)
				}
				if c.ID == "" {
					t.Fatal("no client_id generated")
				}
				if (sec != "") != tt.secret {
					t.Fatalf("secret issued = %v, want %v", sec != "", tt.secret)
				}
				stored, err := e.store.GetClient(context.Background(), c.ID)
				if err != nil {
					t.Fatal(err)
				}
				if tt.secret && string(stored.GetHashedSecret()) == sec {
					t.Fatal("secret stored in clear")
				}
				if tt.secret && len(sec) < 43 {
					t.Fatalf("secret too short: %d chars", len(sec))
				}
				return
			}
			var ae *apierror.Error
			if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Code != "invalid_client_metadata" {
				t.Fatalf("err = %v, want invalid_client_metadata", err)
			}
			if !strings.Contains(ae.Message, tt.wantErr) {
				t.Fatalf("message %q lacks %q", ae.Message, tt.wantErr)
			}
		})
	}
	t.Run("duplicate id", func(t *testing.T) {
		c := idp.Client{ID: "dup", RedirectURIs: []string{"https://rp.example/cb"}, TokenEndpointAuthMethod: "none"}
		if _, err := e.p.RegisterClient(context.Background(), &c); err != nil {
			t.Fatal(err)
		}
		c2 := c
		var ae *apierror.Error
		if _, err := e.p.RegisterClient(context.Background(), &c2); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
			t.Fatalf("duplicate: %v", err)
		}
	})
}

func TestRefreshGraceAndReuse(t *testing.T) {
	e := newEnv(t)
	person := e.person()
	c, sec := e.webClient(nil)
	u := e.login(c.ID, nil, session(person.UID, 3, time.Now()))
	_, tok := e.token(c.ID, sec, url.Values{"grant_type": {"authorization_code"}, "code": {u.Query().Get("code")}, "redirect_uri": {redirectURI}})
	rt := tok["refresh_token"].(string)
	refresh := func() (int, map[string]any) {
		return e.token(c.ID, sec, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	}
	if status, out := refresh(); status != http.StatusOK {
		t.Fatalf("first use: %d %v", status, out)
	}
	if status, out := refresh(); status != http.StatusOK {
		t.Fatalf("second use within grace: %d %v", status, out)
	}
	if status, out := refresh(); status == http.StatusOK || out["error"] != "invalid_grant" {
		t.Fatalf("third use: %d %v, want invalid_grant", status, out)
	}
}

func TestSelectedRoleAndRequestObject(t *testing.T) {
	e := newEnv(t)
	person := e.person()
	c, sec := e.webClient(nil)
	s := session(person.UID, 3, time.Now())
	s.SelectedRoleID = "555254240100"
	e.authn.setSession(s)
	u := expectRedirect(t, e.get(authorizeQuery(c.ID, url.Values{"scope": {"openid selectedrole"}})))
	_, tok := e.token(c.ID, sec, url.Values{"grant_type": {"authorization_code"}, "code": {u.Query().Get("code")}, "redirect_uri": {redirectURI}})
	_, claims := e.verifyJWT(tok["id_token"].(string))
	if claims["selected_roleid"] != "555254240100" {
		t.Fatalf("selected_roleid %v", claims["selected_roleid"])
	}
	if _, ok := claims["nhsid_environment"]; ok {
		t.Fatal("production client got the sandbox marker")
	}
	u = expectRedirect(t, e.get(authorizeQuery(c.ID, nil)))
	_, tok = e.token(c.ID, sec, url.Values{"grant_type": {"authorization_code"}, "code": {u.Query().Get("code")}, "redirect_uri": {redirectURI}})
	_, claims = e.verifyJWT(tok["id_token"].(string))
	if _, ok := claims["selected_roleid"]; ok {
		t.Fatal("selected_roleid without the selectedrole scope")
	}
	resp := e.get(authorizeQuery(c.ID, url.Values{"request": {"eyJhbGciOiJub25lIn0.e30."}}))
	if resp.StatusCode != http.StatusBadRequest {
		if u := expectRedirect(t, resp); u.Query().Get("error") == "" {
			t.Fatalf("request object accepted: %s", u)
		}
	}
}

var _ idp.Authenticator = (*authn.Service)(nil)

// flakyStore reports the database as unreachable when down is set.
type flakyStore struct {
	*memory.Store
	mu   sync.Mutex
	down bool
}

func (s *flakyStore) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		return nil, fmt.Errorf("get client: %w", store.ErrUnavailable)
	}
	return s.Store.GetClient(ctx, id)
}

func TestStoreOutageIsNotInvalidClient(t *testing.T) {
	fs := &flakyStore{Store: memory.New()}
	e := newEnv(t, func(_ *idp.Config, d *idp.Deps) { d.Store = fs; d.People = fs })
	id, sec := e.registerClient(&idp.Client{GrantTypes: []string{"client_credentials"}, TokenEndpointAuthMethod: idp.AuthClientSecretBasic})
	fs.mu.Lock()
	fs.down = true
	fs.mu.Unlock()
	status, tok := e.token(id, sec, url.Values{"grant_type": {"client_credentials"}})
	if status != http.StatusServiceUnavailable || tok["error"] != "temporarily_unavailable" {
		t.Fatalf("outage: %d %v", status, tok)
	}
}
