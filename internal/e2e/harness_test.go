package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
	"golang.org/x/oauth2"

	"github.com/nhsid/nhsid/internal/config"
	"github.com/nhsid/nhsid/internal/server"
	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/internal/webauthntest"
)

// clock is real time plus an adjustable offset.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// env is one running nhsid.
type env struct {
	t          *testing.T
	srv        *server.Server
	pub        *httptest.Server
	adm        *httptest.Server
	issuer     string
	adminToken string
	ca         *webauthntest.CA
	clock      *clock
	logs       *bytes.Buffer
	// resourceServer is a client used to call introspection.
	resourceServer *rp
}

var backends = []string{"memory", "postgres"}

// newEnv starts nhsid on the given backend with a test attestation root
// trusted, so webauthntest devices with that CA reach AAL3.
func newEnv(t *testing.T, backend string, tweak ...func(*config.Config)) *env {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	issuer := "http://localhost:" + port

	ca, err := webauthntest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	anchor := filepath.Join(t.TempDir(), "test-root.pem")
	if err := os.WriteFile(anchor, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.Issuer = issuer
	cfg.Listen = "127.0.0.1:" + port
	secret := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	cfg.Secrets = config.Secrets{GlobalSecret: secret(), ClientSecretPepper: secret(), KeyEncryptionKey: secret()}
	cfg.Admin.BootstrapToken = "test-admin-" + secret()
	cfg.WebAuthn.TrustAnchors = []string{anchor}
	cfg.Keys.Prepublish = 0
	dev := true
	if backend == "postgres" {
		cfg.Database.URL = testdb.URL(t)
		dev = false
	}
	for _, f := range tweak {
		f(&cfg)
	}
	logs := &bytes.Buffer{}
	clk := &clock{}
	log := slog.New(slog.NewJSONHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// Every test RP and SP listens on loopback, so outbound calls
	// (back-channel logout, jwks_uri) may go there.
	srv, err := server.New(context.Background(), server.Options{Config: cfg, Dev: dev, Log: log, Now: clk.Now, OutboundAllowPrivate: true})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	srv.Start()
	pub := httptest.NewUnstartedServer(srv.PublicHandler())
	pub.Listener.Close()
	pub.Listener = ln
	pub.Start()
	adm := httptest.NewServer(srv.AdminHandler())
	t.Cleanup(func() {
		pub.Close()
		adm.Close()
		srv.Close()
		if t.Failed() {
			t.Logf("server log (tail):\n%s", tail(logs.String(), 6000))
		}
	})
	return &env{t: t, srv: srv, pub: pub, adm: adm, issuer: issuer, adminToken: cfg.Admin.BootstrapToken, ca: ca, clock: clk, logs: logs}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// admin calls the admin API with body as JSON and decodes the JSON reply
// into out.
func (e *env) admin(method, path string, body any, want int, out any) {
	e.t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	e.adminRaw(method, path, "application/json", raw, want, out)
}

// adminRaw calls the admin API with a raw body, fails unless the status is
// want, and decodes the JSON reply into out.
func (e *env) adminRaw(method, path, ctype string, body []byte, want int, out any) {
	e.t.Helper()
	status, raw := e.adminCall(method, path, ctype, body)
	if status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

// adminCall calls the admin API as the operator and returns the status
// and the body.
// metrics is the admin listener's /metrics page.
func (e *env) metrics() string {
	e.t.Helper()
	resp, err := http.Get(e.adm.URL + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		e.t.Fatalf("metrics: %d %v", resp.StatusCode, err)
	}
	return string(raw)
}

func (e *env) adminCall(method, path, ctype string, body []byte) (int, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.adm.URL+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.adminToken)
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

type person struct {
	UID string `json:"uid"`
}

// newPerson creates an organisation-less person and returns the uid.
func (e *env) newPerson(given, family string) string {
	var p person
	e.admin("POST", "/admin/v1/people", map[string]any{"given_name": given, "family_name": family,
		"email": strings.ToLower(given) + "@example.nhs.uk", "id_assurance_level": 3,
		"registrations": map[string]string{"gmc": "7654321"}}, 201, &p)
	if len(p.UID) != 12 {
		e.e2eFatal("uid %q is not 12 digits", p.UID)
	}
	return p.UID
}

func (e *env) e2eFatal(format string, args ...any) { e.t.Helper(); e.t.Fatalf(format, args...) }

// invite issues an enrolment invite and returns its code.
func (e *env) invite(uid string) string {
	var inv struct {
		Code, URL string
	}
	e.admin("POST", "/admin/v1/people/"+uid+"/invites", nil, 201, &inv)
	if inv.Code == "" || !strings.Contains(inv.URL, inv.Code) {
		e.e2eFatal("invite reply: %+v", inv)
	}
	return inv.Code
}

// rp is a relying party registered in env.
type rp struct {
	id, secret  string
	key         *rsa.PrivateKey
	redirectURI string
	cb          *httptest.Server
}

// newRP registers a client. method is private_key_jwt, client_secret_basic
// or none; extra merges more metadata.
func (e *env) newRP(method string, extra map[string]any) *rp {
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	e.t.Cleanup(cb.Close)
	r := &rp{redirectURI: cb.URL + "/callback", cb: cb}
	meta := map[string]any{
		"client_name":                "e2e " + method,
		"redirect_uris":              []string{r.redirectURI},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_method": method,
		"scope":                      "openid profile email nhsperson professionalmemberships offline_access",
	}
	if method == "private_key_jwt" {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			e.t.Fatal(err)
		}
		r.key = k
		meta["jwks"] = jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "rp-1", Algorithm: "RS256", Use: "sig"}}}
		meta["token_endpoint_auth_signing_alg"] = "RS256"
	}
	for k, v := range extra {
		meta[k] = v
	}
	var out struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	e.admin("POST", "/admin/v1/clients", meta, 201, &out)
	r.id, r.secret = out.ClientID, out.ClientSecret
	return r
}

// assertion makes a private_key_jwt client assertion.
func (r *rp) assertion(aud string) string {
	sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: r.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "rp-1"))
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	now := time.Now()
	s, _ := jwt.Signed(sig).Claims(jwt.Claims{Issuer: r.id, Subject: r.id, Audience: jwt.Audience{aud},
		ID: base64.RawURLEncoding.EncodeToString(b), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).CompactSerialize()
	return s
}

// oidcClient is one RP's view of nhsid through discovery.
type oidcClient struct {
	rp       *rp
	provider *oidc.Provider
	conf     oauth2.Config
	e        *env
}

func (e *env) client(r *rp, scopes ...string) *oidcClient {
	ctx := context.Background()
	p, err := oidc.NewProvider(ctx, e.issuer)
	if err != nil {
		e.t.Fatalf("discovery: %v", err)
	}
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "profile", "email", "nhsperson", "professionalmemberships", "offline_access"}
	}
	conf := oauth2.Config{ClientID: r.id, ClientSecret: r.secret, Endpoint: p.Endpoint(), RedirectURL: r.redirectURI, Scopes: scopes}
	if r.key != nil {
		conf.ClientSecret = ""
		// The assertion goes in the body; auto-detection would retry a
		// failed attempt with the same (now used) jti.
		conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	}
	return &oidcClient{rp: r, provider: p, conf: conf, e: e}
}

// authOpts returns the extra exchange options for client authentication.
func (c *oidcClient) authOpts() []oauth2.AuthCodeOption {
	if c.rp.key == nil {
		return nil
	}
	return []oauth2.AuthCodeOption{
		oauth2.SetAuthURLParam("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
		oauth2.SetAuthURLParam("client_assertion", c.rp.assertion(c.conf.Endpoint.TokenURL)),
	}
}

// browser is a user agent with a cookie jar and a WebAuthn device.
type browser struct {
	e    *env
	http *http.Client
	dev  *webauthntest.Device
}

func (e *env) browser(dev *webauthntest.Device) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, dev: dev, http: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// newBrowserFor enrols a fresh AAL3 device for uid and returns its browser.
func (e *env) newBrowserFor(uid string) *browser {
	b := e.browser(e.device(true))
	b.mustEnrol(e.invite(uid), 3)
	return b
}

// adaWithRP enrols Ada with an AAL3 browser and registers a
// private_key_jwt client for her to sign in to: the opening of the tests
// that sign in once and then exercise the code or the finish.
func (e *env) adaWithRP() (uid string, b *browser, c *oidcClient) {
	uid = e.newPerson("Ada", "Lovelace")
	return uid, e.newBrowserFor(uid), e.client(e.newRP("private_key_jwt", nil))
}

// device makes a software authenticator for env; attested → AAL3.
func (e *env) device(attested bool) *webauthntest.Device {
	var ca *webauthntest.CA
	if attested {
		ca = e.ca
	}
	return webauthntest.NewDevice("localhost", e.issuer, ca)
}

type apiErr struct {
	Status  int
	Code    string `json:"error"`
	Message string `json:"message"`
}

// postJSON posts body and returns status and raw reply.
func (b *browser) postJSON(path string, body any) (int, []byte) {
	b.e.t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case []byte:
		rd = bytes.NewReader(v)
	default:
		raw, _ := json.Marshal(v)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest("POST", b.e.issuer+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.http.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func decodeErr(status int, raw []byte) apiErr {
	var e apiErr
	_ = json.Unmarshal(raw, &e)
	e.Status = status
	return e
}

// enrol registers b's device through an invite; returns the reply.
func (b *browser) enrol(code string) (int, []byte) {
	b.e.t.Helper()
	st, opts := b.postJSON("/webauthn/register/begin", map[string]string{"invite": code})
	if st != 200 {
		return st, opts
	}
	att, err := b.dev.Register(opts)
	if err != nil {
		b.e.t.Fatalf("device register: %v (options %s)", err, opts)
	}
	return b.postJSON("/webauthn/register/finish?invite="+url.QueryEscape(code), att)
}

func (b *browser) mustEnrol(code string, wantAAL int) {
	b.e.t.Helper()
	st, raw := b.enrol(code)
	if st != 200 {
		b.e.t.Fatalf("enrol: %d %s", st, raw)
	}
	var out struct {
		CredentialID string `json:"credential_id"`
		AAL          int    `json:"aal"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.AAL != wantAAL || out.CredentialID == "" {
		b.e.t.Fatalf("enrol reply %s: want aal %d", raw, wantAAL)
	}
}

// get fetches a URL without following redirects.
func (b *browser) get(u string) *http.Response {
	b.e.t.Helper()
	if strings.HasPrefix(u, "/") {
		u = b.e.issuer + u
	}
	resp, err := b.http.Get(u)
	if err != nil {
		b.e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// getRaw GETs u (an nhsid path) without following redirects and returns
// the response and its body.
func (b *browser) getRaw(u string) (*http.Response, []byte) {
	b.e.t.Helper()
	resp, err := b.http.Get(b.e.issuer + u)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

// follow follows redirects on nhsid until one leaves the issuer; it returns
// that final URL (the RP callback) or the last nhsid URL if none leaves.
func (b *browser) follow(u string) *url.URL {
	b.e.t.Helper()
	for i := 0; i < 10; i++ {
		if strings.HasPrefix(u, "/") {
			u = b.e.issuer + u
		}
		if !strings.HasPrefix(u, b.e.issuer) {
			loc, _ := url.Parse(u)
			return loc
		}
		resp := b.get(u)
		if resp.StatusCode < 300 || resp.StatusCode >= 400 {
			loc, _ := url.Parse(u)
			return loc
		}
		next, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			b.e.t.Fatal(err)
		}
		u = next.String()
	}
	b.e.t.Fatal("too many redirects")
	return nil
}

// login runs the ceremony for a flow at loginURL (/login?flow=…) and
// returns the finish reply's redirect.
func (b *browser) login(loginURL *url.URL) (int, []byte, string) {
	b.e.t.Helper()
	flow := loginURL.Query().Get("flow")
	if loginURL.Path != "/login" || flow == "" {
		b.e.t.Fatalf("expected /login?flow=…, got %s", loginURL)
	}
	st, opts := b.postJSON("/webauthn/login/begin", map[string]string{"flow": flow})
	if st != 200 {
		return st, opts, ""
	}
	as, err := b.dev.Assert(opts)
	if err != nil {
		b.e.t.Fatalf("device assert: %v", err)
	}
	st, raw := b.postJSON("/webauthn/login/finish?flow="+url.QueryEscape(flow), as)
	var out struct {
		Redirect string `json:"redirect"`
	}
	_ = json.Unmarshal(raw, &out)
	return st, raw, out.Redirect
}

// signIn runs authorize → (login if asked) → callback for c and returns the
// callback URL.
func (b *browser) signIn(c *oidcClient, opts ...oauth2.AuthCodeOption) (cb *url.URL, state string, verifier string, nonce string) {
	b.e.t.Helper()
	state, nonce, verifier = randID(), randID(), oauth2.GenerateVerifier()
	opts = append([]oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}, opts...)
	loc := b.follow(c.conf.AuthCodeURL(state, opts...))
	if strings.HasPrefix(loc.String(), b.e.issuer+"/login") {
		st, raw, redirect := b.login(loc)
		if st != 200 {
			b.e.t.Fatalf("login finish: %d %s", st, raw)
		}
		loc = b.follow(redirect)
	}
	return loc, state, verifier, nonce
}

func randID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// exchange trades the code at cb for tokens and verifies the ID token.
func (c *oidcClient) exchange(cb *url.URL, state, verifier, nonce string) (*oauth2.Token, *oidc.IDToken, map[string]any) {
	t := c.e.t
	t.Helper()
	q := cb.Query()
	if q.Get("error") != "" {
		t.Fatalf("authorization error: %s: %s", q.Get("error"), q.Get("error_description"))
	}
	if q.Get("state") != state {
		t.Fatalf("state %q != %q", q.Get("state"), state)
	}
	if q.Get("iss") != c.e.issuer {
		t.Fatalf("authorization response iss = %q, want %q (RFC 9207)", q.Get("iss"), c.e.issuer)
	}
	ctx := context.Background()
	tok, err := c.conf.Exchange(ctx, q.Get("code"), append(c.authOpts(), oauth2.VerifierOption(verifier))...)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := c.provider.Verifier(&oidc.Config{ClientID: c.rp.id}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("verify id token: %v", err)
	}
	if idt.Nonce != nonce {
		t.Fatalf("nonce %q != %q", idt.Nonce, nonce)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	return tok, idt, claims
}

func mustEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}
