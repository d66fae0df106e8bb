package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"html"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"
	crewjam "github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
	dsig "github.com/russellhaering/goxmldsig"
	"golang.org/x/oauth2"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/nhsid/nhsid/audit"
	fedsaml "github.com/nhsid/nhsid/federation/saml"
)

// testSP is a real SAML SP: crewjam's samlsp middleware on an httptest
// server, signing its AuthnRequests (RSA-SHA256), with /app behind
// RequireAccount answering the session's attributes as JSON.
type testSP struct {
	srv  *httptest.Server
	mw   *samlsp.Middleware
	rec  *recordingSessions
	meta []byte
	id   string // nhsid's registration id
}

// recordingSessions keeps the last assertion the SP accepted.
type recordingSessions struct {
	samlsp.SessionProvider
	mu   sync.Mutex
	last *crewjam.Assertion
}

func (s *recordingSessions) CreateSession(w http.ResponseWriter, r *http.Request, a *crewjam.Assertion) error {
	s.mu.Lock()
	s.last = a
	s.mu.Unlock()
	return s.SessionProvider.CreateSession(w, r, a)
}

func (s *recordingSessions) classRef() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil || len(s.last.AuthnStatements) == 0 || s.last.AuthnStatements[0].AuthnContext.AuthnContextClassRef == nil {
		return ""
	}
	return s.last.AuthnStatements[0].AuthnContext.AuthnContextClassRef.Value
}

func selfSigned(t *testing.T, cn string) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return key, cert
}

// newSP starts an SP that trusts e's metadata and registers it.
func (e *env) newSP(signRequests bool) *testSP {
	t := e.t
	t.Helper()
	resp, err := http.Get(e.issuer + fedsaml.PathMetadata)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("metadata: %d %s", resp.StatusCode, raw)
	}
	idpMeta, err := samlsp.ParseMetadata(raw)
	if err != nil {
		t.Fatalf("parse idp metadata: %v", err)
	}
	sp := &testSP{}
	mux := http.NewServeMux()
	sp.srv = httptest.NewServer(mux)
	t.Cleanup(sp.srv.Close)
	key, cert := selfSigned(t, "sp.test")
	root, _ := url.Parse(sp.srv.URL)
	sp.mw, err = samlsp.New(samlsp.Options{URL: *root, Key: key, Certificate: cert, IDPMetadata: idpMeta, SignRequest: signRequests})
	if err != nil {
		t.Fatal(err)
	}
	if signRequests {
		sp.mw.ServiceProvider.SignatureMethod = dsig.RSASHA256SignatureMethod
	}
	sp.rec = &recordingSessions{SessionProvider: sp.mw.Session}
	sp.mw.Session = sp.rec
	mux.Handle("/saml/", sp.mw)
	mux.Handle("/app", sp.mw.RequireAccount(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := samlsp.SessionFromContext(r.Context()).(samlsp.SessionWithAttributes)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.GetAttributes())
	})))
	sp.meta, err = xml.MarshalIndent(sp.mw.ServiceProvider.Metadata(), "", " ")
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		ID       string `json:"id"`
		EntityID string `json:"entity_id"`
	}
	e.adminRaw("POST", "/admin/v1/saml/providers", "application/samlmetadata+xml", sp.meta, 201, &out)
	if out.EntityID != sp.mw.ServiceProvider.Metadata().EntityID {
		t.Fatalf("registered entity id %q", out.EntityID)
	}
	sp.id = out.ID
	return sp
}

// samlFetch GETs u (absolute) with b's cookies, not following redirects, and
// returns the response with its body read.
func (b *browser) samlFetch(u string) (*http.Response, []byte) {
	b.e.t.Helper()
	resp, err := b.http.Get(u)
	if err != nil {
		b.e.t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, raw
}

// samlForm is the HTTP-POST binding form scraped from nhsid's page.
type samlForm struct {
	Action, Field, Value, RelayState string
}

var (
	reFormAction = regexp.MustCompile(`<form[^>]*action="([^"]*)"`)
	reHidden     = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
)

func scrapeForm(t *testing.T, page []byte) samlForm {
	t.Helper()
	m := reFormAction.FindSubmatch(page)
	if m == nil {
		t.Fatalf("no form in page:\n%s", page)
	}
	f := samlForm{Action: html.UnescapeString(string(m[1]))}
	for _, h := range reHidden.FindAllSubmatch(page, -1) {
		name, value := string(h[1]), html.UnescapeString(string(h[2]))
		if name == "RelayState" {
			f.RelayState = value
		} else {
			f.Field, f.Value = name, value
		}
	}
	return f
}

// noInlineScript fails unless every <script> in page loads a file.
func noInlineScript(t *testing.T, resp *http.Response, page []byte) {
	t.Helper()
	for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAll(page, -1) {
		if !bytes.Contains(m, []byte(`src="`)) {
			t.Fatalf("inline script on the POST page: %s", m)
		}
	}
	if !bytes.Contains(page, []byte(`src="/static/saml-post.js"`)) {
		t.Fatal("POST page does not load saml-post.js")
	}
	if !bytes.Contains(page, []byte(`type="submit"`)) {
		t.Fatal("POST page has no Continue button for no-JS browsers")
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("CSP %q", csp)
	}
}

// samlPost submits a form to the SP with b's cookies.
func (b *browser) samlPost(action string, form url.Values) (*http.Response, []byte) {
	b.e.t.Helper()
	resp, err := b.http.PostForm(action, form)
	if err != nil {
		b.e.t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, raw
}

// spSignIn drives GET sp/app through nhsid. With ceremony it expects the
// sign-in page and runs it. It returns the POST form nhsid rendered.
func (b *browser) spStart(sp *testSP, ceremony bool) samlForm {
	t := b.e.t
	t.Helper()
	resp, _ := b.samlFetch(sp.srv.URL + "/app")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("SP /app: status %d", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, b.e.issuer+fedsaml.PathSSO+"?") {
		t.Fatalf("SP sent the browser to %s", loc)
	}
	if !strings.Contains(loc, "Signature=") {
		t.Fatal("SP request is not signed")
	}
	resp, page := b.samlFetch(loc)
	if ceremony {
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("sso: status %d: %s", resp.StatusCode, page)
		}
		login, _ := url.Parse(b.e.issuer + resp.Header.Get("Location"))
		st, raw, redirect := b.login(login)
		if st != 200 {
			t.Fatalf("login finish: %d %s", st, raw)
		}
		resp, page = b.samlFetch(b.e.issuer + redirect)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("want the POST page, got %d (Location %q): %s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	noInlineScript(t, resp, page)
	f := scrapeForm(t, page)
	if f.Field != "SAMLResponse" || f.Action != sp.srv.URL+"/saml/acs" {
		t.Fatalf("form %+v", f)
	}
	return f
}

// spFinish posts the response to the ACS and reads /app's attributes.
func (b *browser) spFinish(sp *testSP, f samlForm) map[string][]string {
	t := b.e.t
	t.Helper()
	resp, raw := b.samlPost(f.Action, url.Values{"SAMLResponse": {f.Value}, "RelayState": {f.RelayState}})
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("ACS: status %d: %s", resp.StatusCode, raw)
	}
	next, _ := url.Parse(sp.srv.URL)
	next, _ = next.Parse(resp.Header.Get("Location"))
	resp, raw = b.samlFetch(next.String())
	if resp.StatusCode != 200 {
		t.Fatalf("SP /app after sign-in: %d %s", resp.StatusCode, raw)
	}
	var attrs map[string][]string
	if err := json.Unmarshal(raw, &attrs); err != nil {
		t.Fatalf("attributes %s: %v", raw, err)
	}
	return attrs
}

// oidcNoCeremony runs an OIDC authorize for c and fails if it needs a
// sign-in ceremony; it returns the ID token claims.
func (b *browser) oidcNoCeremony(c *oidcClient) map[string]any {
	t := b.e.t
	t.Helper()
	state, nonce, verifier := randID(), randID(), oauth2.GenerateVerifier()
	loc := b.follow(c.conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)))
	if strings.HasPrefix(loc.String(), b.e.issuer) {
		t.Fatalf("OIDC after SAML sign-in stopped at %s: a second ceremony was asked for", loc)
	}
	_, _, claims := c.exchange(loc, state, verifier, nonce)
	return claims
}

func TestSAML(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			uid := e.newPerson("Ada", "Lovelace")
			enrolled := e.newBrowserFor(uid)
			dev := enrolled.dev
			sp := e.newSP(true)
			c := e.client(e.newRP("private_key_jwt", nil))

			t.Run("SPThenOIDC", func(t *testing.T) {
				b := e.browser(dev)
				f := b.spStart(sp, true)

				// Sanity: the SP refuses a tampered response.
				raw, err := base64.StdEncoding.DecodeString(f.Value)
				if err != nil {
					t.Fatal(err)
				}
				tampered := bytes.Replace(raw, []byte(">Lovelace<"), []byte(">Babbage<"), 1)
				if bytes.Equal(tampered, raw) {
					t.Fatal("family name not found in the response")
				}
				resp, _ := b.samlPost(f.Action, url.Values{"SAMLResponse": {base64.StdEncoding.EncodeToString(tampered)}, "RelayState": {f.RelayState}})
				if resp.StatusCode == http.StatusFound {
					t.Fatal("the SP accepted a tampered response")
				}
				if !bytes.Contains(raw, []byte(`SignatureMethod Algorithm="`+dsig.RSASHA256SignatureMethod+`"`)) {
					t.Fatal("response not signed with RSA-SHA256")
				}

				attrs := b.spFinish(sp, f)
				for name, want := range map[string]string{"uid": uid, "givenName": "Ada", "sn": "Lovelace",
					"mail": "ada@example.nhs.uk", "aal": "3", "displayName": "Ada Lovelace"} {
					if got := attrs[name]; len(got) != 1 || got[0] != want {
						t.Fatalf("attribute %s = %v, want %q (all: %v)", name, got, want, attrs)
					}
				}
				mustEqual(t, "AuthnContextClassRef", sp.rec.classRef(), fedsaml.ClassAAL3)
				mustEqual(t, "NameID", sp.rec.last.Subject.NameID.Value, uid)
				mustEqual(t, "NameID format", sp.rec.last.Subject.NameID.Format, fedsaml.NameIDPersistent)

				claims := b.oidcNoCeremony(c)
				mustEqual(t, "sub", claims["sub"], uid)

				// The audit trail of this journey, exactly: the SAML
				// sign-in and assertion, then the OIDC code and token
				// without a second sign-in.
				var types []string
				var assertion audit.Event
				for _, ev := range e.personEvents(uid) {
					types = append(types, string(ev.Type))
					if ev.Type == audit.SAMLAssertionIssued {
						assertion = ev
					}
				}
				mustEqual(t, "audit trail", strings.Join(types, " "),
					"admin.change admin.change enrolment signin.success saml.assertion_issued client.first_use code.issued token.issued")
				mustEqual(t, "assertion audited for the SP", assertion.Client, sp.mw.ServiceProvider.Metadata().EntityID)
			})

			t.Run("OIDCThenSP", func(t *testing.T) {
				b := e.browser(dev)
				cb, state, verifier, nonce := b.signIn(c)
				_, idt, _ := c.exchange(cb, state, verifier, nonce)
				mustEqual(t, "sub", idt.Subject, uid)
				f := b.spStart(sp, false) // no second ceremony
				attrs := b.spFinish(sp, f)
				mustEqual(t, "uid", attrs["uid"], []string{uid})
				mustEqual(t, "AuthnContextClassRef", sp.rec.classRef(), fedsaml.ClassAAL3)
			})

			t.Run("POSTBindingSurvivesSameSiteLax", func(t *testing.T) {
				b := e.browser(dev)
				b.spStart(sp, true) // signed in
				req, err := sp.mw.ServiceProvider.MakeAuthenticationRequest(e.issuer+fedsaml.PathSSO, crewjam.HTTPPostBinding, crewjam.HTTPPostBinding)
				if err != nil {
					t.Fatal(err)
				}
				doc := etree.NewDocument()
				doc.SetRoot(req.Element())
				buf, err := doc.WriteToBytes()
				if err != nil {
					t.Fatal(err)
				}
				form := url.Values{"SAMLRequest": {base64.StdEncoding.EncodeToString(buf)}, "RelayState": {"rs-1"}}
				// The cross-site POST carries no nhsid cookie.
				crossSite := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
				resp, err := crossSite.PostForm(e.issuer+fedsaml.PathSSO, form)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				loc := resp.Header.Get("Location")
				if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, fedsaml.PathSSOContinue+"?req=") {
					t.Fatalf("POST: %d Location %q", resp.StatusCode, loc)
				}
				// The same-site GET sees the session: straight to the form.
				resp, page := b.samlFetch(e.issuer + loc)
				if resp.StatusCode != 200 {
					t.Fatalf("continue: %d %s", resp.StatusCode, page)
				}
				noInlineScript(t, resp, page)
				mustEqual(t, "RelayState", scrapeForm(t, page).RelayState, "rs-1")
				// The continuation is single-use, and the request ID too.
				if resp, _ := b.samlFetch(e.issuer + loc); resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("second continue: %d", resp.StatusCode)
				}
				resp, err = crossSite.PostForm(e.issuer+fedsaml.PathSSO, form)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("replayed AuthnRequest: %d", resp.StatusCode)
				}
			})

			t.Run("UnsignedRequestRefused", func(t *testing.T) {
				b := e.browser(dev)
				u, err := sp.mw.ServiceProvider.MakeRedirectAuthenticationRequest("")
				if err != nil {
					t.Fatal(err)
				}
				q := u.Query()
				q.Del("Signature")
				q.Del("SigAlg")
				u.RawQuery = q.Encode()
				resp, page := b.samlFetch(u.String())
				if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(page, []byte("signature")) {
					t.Fatalf("unsigned request from a signing SP: %d %s", resp.StatusCode, page)
				}
				if !strings.Contains(e.logs.String(), `"reason":"bad_signature"`) {
					t.Fatal("no log line for the refusal")
				}
			})

			t.Run("AdminSettingsAndMinAAL", func(t *testing.T) {
				var got struct {
					Settings fedsaml.Settings `json:"settings"`
				}
				body, _ := json.Marshal(map[string]any{"min_aal": 3, "sign": "assertion", "attributes": map[string]string{"uid": "urn:oid:0.9.2342.19200300.100.1.1"}})
				e.adminRaw("PATCH", "/admin/v1/saml/providers/"+sp.id, "application/json", body, 200, &got)
				mustEqual(t, "min_aal", got.Settings.MinAAL, 3)
				e.adminRaw("PATCH", "/admin/v1/saml/providers/"+sp.id, "application/json", []byte(`{"sign":"nope"}`), 400, nil)
				var list struct {
					Items []fedsaml.ServiceProvider `json:"items"`
				}
				e.adminRaw("GET", "/admin/v1/saml/providers", "", nil, 200, &list)
				if len(list.Items) != 1 || list.Items[0].ID != sp.id {
					t.Fatalf("list: %+v", list.Items)
				}
				e.adminRaw("POST", "/admin/v1/saml/providers", "application/xml", []byte(`<!DOCTYPE x [<!ENTITY a "b">]><x/>`), 400, nil)

				b := e.browser(dev)
				f := b.spStart(sp, true)
				attrs := b.spFinish(sp, f)
				mustEqual(t, "renamed uid", attrs["urn:oid:0.9.2342.19200300.100.1.1"], []string{uid})
				// An AAL2 device cannot reach an AAL3 SP.
				uid2 := e.newPerson("Bob", "Jones")
				b2 := e.browser(e.device(false))
				b2.mustEnrol(e.invite(uid2), 2)
				resp, _ := b2.samlFetch(sp.srv.URL + "/app")
				resp, page := b2.samlFetch(resp.Header.Get("Location"))
				if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "/login?flow=") {
					t.Fatalf("AAL2 session at an AAL3 SP: %d %s", resp.StatusCode, page)
				}
			})
		})
	}
}
